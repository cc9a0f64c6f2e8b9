//! The percentile every figure here uses: nearest rank on sorted samples.

/// The `q` quantile (0 ≤ q ≤ 1) of `sorted`; `None` when there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted
        .get((last as f64 * q.clamp(0.0, 1.0)).round() as usize)
        .copied()
}

/// Sorts `samples` and takes the `q` quantile.
pub fn percentile_of<T: Copy + PartialOrd>(samples: &mut [T], q: f64) -> Option<T> {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    percentile(samples, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=101).collect();
        assert_eq!(percentile(&v, 0.5), Some(51));
        assert_eq!(percentile(&v, 0.99), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(101));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
        let mut w = [3.0, 1.0, 2.0];
        assert_eq!(percentile_of(&mut w, 0.5), Some(2.0));
    }
}
