//! What the bench binaries share: reading a process's peak memory, and summarising samples
//! as a median with its spread.

use serde::Serialize;

/// The peak resident set (`VmHWM`) of process `pid` (this process when `None`), in MiB.
pub fn peak_rss_mib(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A median with its spread: the quartiles and the extremes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let last = sorted.len().checked_sub(1)?;
        // Nearest-rank on the sorted samples; the median of an even count is the mean of two.
        let at = |q: f64| sorted[((last as f64) * q).round() as usize];
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[last / 2] + sorted[last / 2 + 1]) / 2.0
        } else {
            sorted[last / 2]
        };
        Some(Self {
            median,
            p25: at(0.25),
            p75: at(0.75),
            min: sorted[0],
            max: sorted[last],
            samples: sorted.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let odd = Spread::of(&[5.0, 1.0, 3.0]).unwrap_or_else(|| panic!("samples"));
        assert_eq!((odd.median, odd.min, odd.max), (3.0, 1.0, 5.0));
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap_or_else(|| panic!("samples"));
        assert_eq!(even.median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn this_process_has_a_peak() {
        assert!(peak_rss_mib(None).is_some_and(|mib| mib > 0.0));
    }
}
