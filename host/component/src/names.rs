//! WIT names and the semver rule used to link them.
//!
//! Guests built at different times import the same interface at different
//! patch versions (`wasi:io/streams@0.2.6` beside `wasi:http/types@0.2.4`,
//! which itself was built against `wasi:io@0.2.4`). A host implementation of
//! `wasi:io/streams@0.2.x` must satisfy all of them, so imports are matched by
//! name plus a *compatibility key*: the version with everything after the
//! first non-zero component cleared (`0.2.6` → `0.2`, `1.4.2` → `1`).
//! Pre-release versions (`0.2.0-draft`) only match themselves, because draft
//! interfaces change shape between drafts.

use semver::Version;

/// An interface or top-level item name split into the unversioned part and
/// the version, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitName<'a> {
    /// `wasi:io/streams` (or a plain name such as `greet`).
    pub unversioned: &'a str,
    pub version: Option<Version>,
}

impl<'a> WitName<'a> {
    /// Parses `ns:pkg/iface@x.y.z`. A version that does not parse as semver is
    /// kept as part of the name, so it can only match itself exactly.
    pub fn parse(name: &'a str) -> WitName<'a> {
        match name.rsplit_once('@') {
            Some((base, ver)) => match Version::parse(ver) {
                Ok(v) => WitName {
                    unversioned: base,
                    version: Some(v),
                },
                Err(_) => WitName {
                    unversioned: name,
                    version: None,
                },
            },
            None => WitName {
                unversioned: name,
                version: None,
            },
        }
    }

    /// The key under which semver-compatible versions of this name collide.
    pub fn compat_key(&self) -> String {
        match &self.version {
            None => self.unversioned.to_string(),
            Some(v) => format!("{}@{}", self.unversioned, compat_version(v)),
        }
    }
}

/// The part of a version that must match for two versions to be compatible.
pub fn compat_version(v: &Version) -> String {
    if !v.pre.is_empty() {
        return v.to_string();
    }
    if v.major != 0 {
        format!("{}", v.major)
    } else if v.minor != 0 {
        format!("0.{}", v.minor)
    } else {
        format!("0.0.{}", v.patch)
    }
}

/// Whether an import named `import` may be satisfied by a host item named
/// `provided`.
pub fn compatible(import: &str, provided: &str) -> bool {
    let a = WitName::parse(import);
    let b = WitName::parse(provided);
    a.unversioned == b.unversioned && a.compat_key() == b.compat_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_versions_are_compatible() {
        assert!(compatible("wasi:io/streams@0.2.6", "wasi:io/streams@0.2.0"));
        assert!(compatible("wasi:io/streams@0.2.0", "wasi:io/streams@0.2.6"));
        assert!(compatible(
            "wasmcloud:bus/lattice@1.0.0",
            "wasmcloud:bus/lattice@1.3.1"
        ));
    }

    #[test]
    fn incompatible_versions_are_refused() {
        assert!(!compatible(
            "wasi:io/streams@0.3.0",
            "wasi:io/streams@0.2.6"
        ));
        assert!(!compatible(
            "wasmcloud:bus/lattice@2.0.0",
            "wasmcloud:bus/lattice@1.0.0"
        ));
        assert!(!compatible("wasi:io/streams@0.2.6", "wasi:io/poll@0.2.6"));
        assert!(!compatible(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/store@0.2.0-draft2"
        ));
        assert!(!compatible(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/store@0.2.0"
        ));
        assert!(!compatible("a:b/c@0.0.1", "a:b/c@0.0.2"));
    }

    #[test]
    fn unversioned_names_match_exactly() {
        assert!(compatible("greet", "greet"));
        assert!(!compatible("greet", "greet2"));
        assert!(compatible(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/store@0.2.0-draft"
        ));
    }
}
