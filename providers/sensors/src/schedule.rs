//! When each sampled sensor is due: the periodic schedule a sampler
//! follows (the host runs the thread and delivers the readings).
//!
//! Kept apart from the thread so that the rules are testable with made-up
//! instants: every sensor is due at the start, then every `interval_ms`;
//! a tick missed because a delivery ran long is skipped, not bunched up
//! (a reading late by three intervals is one reading, not three).

use std::time::{Duration, Instant};

/// The next due time of every sampled sensor.
#[derive(Debug, Clone)]
pub struct Schedule {
    due: Vec<(String, Duration, Instant)>,
}

impl Schedule {
    /// A schedule of `sampling` (sensor name, interval), all due at
    /// `start`. Intervals of zero are taken as 1 ms, so that the schedule
    /// always moves forward.
    pub fn new(sampling: Vec<(String, Duration)>, start: Instant) -> Schedule {
        Schedule {
            due: sampling
                .into_iter()
                .map(|(name, every)| (name, every.max(Duration::from_millis(1)), start))
                .collect(),
        }
    }

    /// Whether nothing is sampled.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The sensors due at `now`, in schedule order; each moves on to its
    /// first due time after `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (name, every, next) in &mut self.due {
            if *next > now {
                continue;
            }
            while *next <= now {
                *next += *every;
            }
            out.push(name.clone());
        }
        out
    }

    /// When the next sensor is due (`None`: nothing is sampled).
    pub fn next_wake(&self) -> Option<Instant> {
        self.due.iter().map(|d| d.2).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_sensor_is_due_at_the_start_then_at_its_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![("a".into(), ms(100)), ("b".into(), ms(250))], t0);
        assert_eq!(s.take_due(t0), vec!["a", "b"]);
        assert_eq!(s.next_wake(), Some(t0 + ms(100)));
        assert!(s.take_due(t0 + ms(99)).is_empty());
        assert_eq!(s.take_due(t0 + ms(100)), vec!["a"]);
        assert_eq!(s.take_due(t0 + ms(250)), vec!["a", "b"]);
        assert_eq!(s.next_wake(), Some(t0 + ms(300)));
    }

    #[test]
    fn missed_ticks_are_skipped_not_bunched() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![("a".into(), ms(100))], t0);
        s.take_due(t0);
        // Late by three intervals: one reading, next due on the grid.
        assert_eq!(s.take_due(t0 + ms(350)), vec!["a"]);
        assert!(s.take_due(t0 + ms(351)).is_empty());
        assert_eq!(s.next_wake(), Some(t0 + ms(400)));
    }

    #[test]
    fn a_zero_interval_still_moves_forward() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![("a".into(), Duration::ZERO)], t0);
        assert_eq!(s.take_due(t0), vec!["a"]);
        assert!(s.next_wake().is_some_and(|w| w > t0));
        assert!(Schedule::new(Vec::new(), t0).is_empty());
    }
}
