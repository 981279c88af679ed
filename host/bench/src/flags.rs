//! `--name value` flags of the benchmark binaries, read the one way they
//! all need: a value or a default, a comma-separated list, and an error
//! naming the flag when a value does not parse.

use std::str::FromStr;

use anyhow::{anyhow, Result};

/// The process's arguments.
pub struct Flags(Vec<String>);

impl Flags {
    /// This process's arguments.
    pub fn from_env() -> Flags {
        Flags(std::env::args().collect())
    }

    /// The value after `name`, if `name` is given.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1).cloned())
    }

    /// The value after `name` parsed, or `default` when it is not given.
    pub fn value<T: FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(s) => parse(name, &s),
        }
    }

    /// The comma-separated values after `name`, or those of `default`.
    pub fn list<T: FromStr>(&self, name: &str, default: &str) -> Result<Vec<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .map(|s| parse(name, s.trim()))
            .collect()
    }
}

fn parse<T: FromStr>(name: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| anyhow!("{name} {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(a: &[&str]) -> Flags {
        Flags(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn values_lists_defaults_and_errors_naming_the_flag() {
        let f = flags(&["bin", "--runs", "5", "--connections", "1, 8", "--bad", "x"]);
        assert_eq!(f.value("--runs", 3usize).unwrap(), 5);
        assert_eq!(f.value("--seconds", 8u64).unwrap(), 8);
        assert_eq!(f.list::<usize>("--connections", "32").unwrap(), vec![1, 8]);
        assert_eq!(f.list::<usize>("--other", "2,3").unwrap(), vec![2, 3]);
        let e = f.value("--bad", 1u32).unwrap_err().to_string();
        assert!(e.starts_with("--bad \"x\""), "{e}");
    }
}
