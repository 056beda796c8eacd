//! Numbers in human output, written one way everywhere: sizes ([`bytes`]), durations
//! ([`duration_ms`]), counts with the right singular or plural word ([`count`]), and fitness
//! scores and swap impacts on one scale ([`score`], [`impact`]).
//!
//! **Invariants:** every size a command prints goes through [`bytes`] (B, KiB, MiB, GiB, TiB:
//! powers of 1024), every duration through [`duration_ms`] (`ms` under a second, `s` above), and
//! no count is written as `word(s)`. Human output shows fitness on the scale `bundle.toml`'s
//! `min-fitness` uses, 0.00 to 1.00 (1.00: every scored node fully fit for the tier); a swap's
//! impact and a blocker's own fitness are shown on the same scale (`+0.25`, `0.50`). JSON keeps
//! the seed's contract (`score` 0..1, `points` and `impact_points` in whole points, `impact`
//! as `"+25"`): these helpers are for human text only.

/// A size: `512 B`, `1.50 KiB`, `3.25 MiB`.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// A duration: `850 ms` under a second, `1.25 s` from one second on.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// `n` and the word for it: `1 secret`, `2 secrets`, `0 secrets`, `2 entries` (see [`noun`]).
pub fn count(n: usize, singular: &str) -> String {
    format!("{n} {}", noun(n, singular))
}

/// The word for `n` things: `singular` for one, its plural otherwise.
pub fn noun(n: usize, singular: &str) -> String {
    if n == 1 {
        return singular.to_string();
    }
    match singular {
        "entry" => "entries".to_string(),
        "directory" => "directories".to_string(),
        "class" => "classes".to_string(),
        word if word.ends_with('s') || word.ends_with('x') => format!("{word}es"),
        word => format!("{word}s"),
    }
}

/// A fitness score (0..=1) as human output shows it: `0.65`.
pub fn score(score: f64) -> String {
    format!("{score:.2}")
}

/// Fitness in whole points (0..=100, as the analysis computes it) on the human scale: `0.65`.
pub fn points(points: u32) -> String {
    format!("{:.2}", f64::from(points) / 100.0)
}

/// A change of fitness in whole points on the human scale, signed: `+0.18`, `-0.05`.
pub fn impact(points: i64) -> String {
    let sign = if points < 0 { '-' } else { '+' };
    let points = points.unsigned_abs();
    format!("{sign}{}.{:02}", points / 100, points % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_counts_and_scores() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(3 << 20), "3.00 MiB");
        assert_eq!(duration_ms(0), "0 ms");
        assert_eq!(duration_ms(999), "999 ms");
        assert_eq!(duration_ms(1250), "1.25 s");
        assert_eq!(count(1, "secret"), "1 secret");
        assert_eq!(count(0, "secret"), "0 secrets");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(3, "class"), "3 classes");
        assert_eq!(score(0.654), "0.65");
        assert_eq!(points(61), "0.61");
        assert_eq!(points(100), "1.00");
        assert_eq!(impact(18), "+0.18");
        assert_eq!(impact(-5), "-0.05");
        assert_eq!(impact(100), "+1.00");
        assert_eq!(impact(0), "+0.00");
    }
}
