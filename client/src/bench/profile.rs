//! Load profiles, named as GuideLLM names them.
//!
//! - `synchronous`: one request at a time, each sent when the previous one ends.
//! - `throughput`: `--max-concurrency` streams at once, each sending back to back: the most the
//!   target can take.
//! - `concurrent:N`: N streams, each sending back to back.
//! - `constant:RATE`: requests sent every 1/RATE seconds, whether or not earlier ones finished.
//! - `poisson:RATE`: exponential gaps of mean 1/RATE (a seeded generator, so a run repeats).
//! - `sweep[:N]`: synchronous, then throughput, then N − 2 constant rates spread evenly between
//!   the two measured request rates (N = 10 by default, as GuideLLM).
//!
//! Rate profiles send on schedule up to `--max-concurrency` requests in flight; past that a
//! request waits for a slot, and its record keeps both the planned and the actual send time.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};

/// One load profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// One at a time.
    Synchronous,
    /// As many as `--max-concurrency` allows.
    Throughput,
    /// A fixed number of streams.
    Concurrent(usize),
    /// Evenly spaced sends at a rate (requests/s).
    Constant(f64),
    /// Poisson arrivals at a mean rate (requests/s).
    Poisson(f64),
    /// Synchronous, throughput, and constant rates between: this many profiles in all.
    Sweep(usize),
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let rate = |arg: Option<&str>| -> Result<f64, String> {
            let arg = arg.ok_or_else(|| format!("`{name}` needs a rate: `{name}:RATE` in requests per second"))?;
            match arg.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
                _ => Err(format!("`{name}` rate must be a positive number, got `{arg}`")),
            }
        };
        let count = |arg: &str, min: usize| -> Result<usize, String> {
            match arg.parse::<usize>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!("`{name}` needs a whole number of at least {min}, got `{arg}`")),
            }
        };
        match (name, arg) {
            ("synchronous", None) => Ok(Profile::Synchronous),
            ("throughput", None) => Ok(Profile::Throughput),
            ("concurrent", Some(n)) => Ok(Profile::Concurrent(count(n, 1)?)),
            ("concurrent", None) => Err("`concurrent` needs a stream count: `concurrent:N`".into()),
            ("constant", arg) => Ok(Profile::Constant(rate(arg)?)),
            ("poisson", arg) => Ok(Profile::Poisson(rate(arg)?)),
            ("sweep", None) => Ok(Profile::Sweep(10)),
            ("sweep", Some(n)) => Ok(Profile::Sweep(count(n, 2)?)),
            ("synchronous" | "throughput", Some(_)) => Err(format!("`{name}` takes no argument")),
            _ => Err(format!("unknown profile `{s}`; expected synchronous, throughput, concurrent:N, constant:RATE, poisson:RATE or sweep[:N]")),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::Synchronous => write!(f, "synchronous"),
            Profile::Throughput => write!(f, "throughput"),
            Profile::Concurrent(n) => write!(f, "concurrent:{n}"),
            Profile::Constant(r) => write!(f, "constant:{}", short(*r)),
            Profile::Poisson(r) => write!(f, "poisson:{}", short(*r)),
            Profile::Sweep(n) => write!(f, "sweep:{n}"),
        }
    }
}

/// A rate with at most three decimals and no trailing zeros.
fn short(r: f64) -> String {
    let s = format!("{r:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Profile {
    /// The requested rate of a rate profile.
    pub fn target_rate(&self) -> Option<f64> {
        match self {
            Profile::Constant(r) | Profile::Poisson(r) => Some(*r),
            _ => None,
        }
    }

    /// How a single (non-sweep) profile issues requests.
    pub fn mode(&self, max_concurrency: usize) -> Mode {
        match *self {
            Profile::Synchronous => Mode::Streams(1),
            Profile::Throughput | Profile::Sweep(_) => Mode::Streams(max_concurrency.max(1)),
            Profile::Concurrent(n) => Mode::Streams(n),
            Profile::Constant(r) | Profile::Poisson(r) => Mode::Scheduled(*self, r),
        }
    }
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// N closed-loop streams.
    Streams(usize),
    /// Open-loop sends on a schedule.
    Scheduled(Profile, f64),
}

/// Send times, in seconds from the profile's start, for an open-loop profile.
#[derive(Debug)]
pub struct Schedule {
    next: f64,
    gap: Gap,
}

#[derive(Debug)]
enum Gap {
    Constant(f64),
    Poisson(Exp<f64>, Box<StdRng>),
}

impl Schedule {
    /// The schedule of a rate profile (`constant` or `poisson`); `None` for closed-loop ones.
    pub fn new(profile: Profile, seed: u64) -> Option<Schedule> {
        let gap = match profile {
            Profile::Constant(r) => Gap::Constant(1.0 / r),
            Profile::Poisson(r) => Gap::Poisson(Exp::new(r).ok()?, Box::new(StdRng::seed_from_u64(seed))),
            _ => return None,
        };
        Some(Schedule { next: 0.0, gap })
    }
}

impl Iterator for Schedule {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let at = self.next;
        self.next += match &mut self.gap {
            Gap::Constant(g) => *g,
            Gap::Poisson(exp, rng) => exp.sample(rng.as_mut()),
        };
        Some(at)
    }
}

/// The constant rates a sweep runs between its synchronous and throughput rates: `total − 2`
/// of them, evenly spaced, ends excluded.
pub fn sweep_rates(synchronous: f64, throughput: f64, total: usize) -> Vec<f64> {
    let inner = total.saturating_sub(2);
    let (lo, hi) = (synchronous.min(throughput), synchronous.max(throughput));
    (1..=inner).map(|k| lo + (hi - lo) * k as f64 / (inner + 1) as f64).filter(|r| *r > 0.0).collect()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_print_back() {
        for s in ["synchronous", "throughput", "concurrent:4", "constant:2.5", "poisson:0.5", "sweep:10"] {
            assert_eq!(s.parse::<Profile>().unwrap().to_string(), s);
        }
        assert_eq!("sweep".parse::<Profile>().unwrap(), Profile::Sweep(10));
        for bad in ["constant", "constant:0", "constant:-1", "concurrent:0", "sweep:1", "synchronous:2", "burst:3"] {
            assert!(bad.parse::<Profile>().is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_schedule_is_evenly_spaced() {
        let times: Vec<f64> = Schedule::new(Profile::Constant(4.0), 0).unwrap().take(5).collect();
        assert_eq!(times, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!(Schedule::new(Profile::Synchronous, 0).is_none());
    }

    #[test]
    fn poisson_schedule_has_the_mean_rate_and_exponential_spread() {
        let times: Vec<f64> = Schedule::new(Profile::Poisson(10.0), 7).unwrap().take(5001).collect();
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((mean - 0.1).abs() < 0.005, "mean gap {mean}");
        assert!((sd / mean - 1.0).abs() < 0.1, "coefficient of variation {}", sd / mean);
        let again: Vec<f64> = Schedule::new(Profile::Poisson(10.0), 7).unwrap().take(5001).collect();
        assert_eq!(times, again);
    }

    #[test]
    fn sweep_rates_lie_strictly_between() {
        assert_eq!(sweep_rates(1.0, 10.0, 10), vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(sweep_rates(1.0, 4.0, 4), vec![2.0, 3.0]);
        assert!(sweep_rates(1.0, 4.0, 2).is_empty());
    }
}
