//! Where the time of one request goes: named phases, measured one after the other, for the
//! daemon's handling of a control request and for `imgsign hook`. Off unless asked for (the
//! CLI turns it on with `IMGSIGN_TIMING`); it measures, never decides.

use std::time::{Duration, Instant};

/// Phases measured since [`Phases::start`], each from the end of the one before.
#[derive(Debug, Clone)]
pub struct Phases {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases::start()
    }
}

impl Phases {
    pub fn start() -> Self {
        let now = Instant::now();
        Phases { start: now, last: now, phases: Vec::new() }
    }

    /// Ends phase `name` now (a name marked twice adds up).
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        match self.phases.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += took,
            None => self.phases.push((name, took)),
        }
    }

    pub fn phases(&self) -> &[(&'static str, Duration)] {
        &self.phases
    }

    pub fn total(&self) -> Duration {
        self.last - self.start
    }

    /// `{"phase": ms, ...}` in the order measured, and the total.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 1e2;
        let phases: serde_json::Map<String, serde_json::Value> =
            self.phases.iter().map(|(n, d)| (n.to_string(), ms(*d).into())).collect();
        serde_json::json!({"phasesMs": phases, "totalMs": ms(self.total())})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_each_other_and_add_up() {
        let mut p = Phases::start();
        p.mark("a");
        std::thread::sleep(Duration::from_millis(2));
        p.mark("b");
        p.mark("a");
        let names: Vec<_> = p.phases().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "b"]);
        let sum: Duration = p.phases().iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, p.total());
        assert!(p.phases()[1].1 >= Duration::from_millis(2));
        assert!(p.to_json()["phasesMs"]["b"].as_f64().unwrap() >= 2.0);
    }
}
