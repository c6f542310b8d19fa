//! A small, fully specified PRNG (xoshiro256++ seeded by SplitMix64). Written out here rather than
//! taken from `rand` so that a seed produces the same logs forever, whatever crate versions move.

#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a few integers, for per-entity effects that must not depend on the
/// order in which entities are drawn.
pub fn mix(parts: &[u64]) -> u64 {
    let mut state = 0x51_7CC1_B727_220A;
    let mut out = 0;
    for p in parts {
        state ^= *p;
        out = splitmix64(&mut state);
    }
    out
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        Rng {
            s: [
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
            ],
        }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be positive. Lemire's multiply-shift, bias below 2^-32 for the
    /// small ranges used here.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// A standard normal value derived from a hash (Box-Muller), for fixed per-entity effects.
pub fn normal_from_hash(h: u64) -> f64 {
    let mut state = h;
    let u1 = ((splitmix64(&mut state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Draws from a discrete distribution by inversion of the cumulative weights, with a guide
/// table (Chen's indexed search) so a draw from 30,000 Zipf domains costs a lookup and a short
/// scan instead of a binary search, while drawing exactly the index a binary search would.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<f64>,
    /// `guide[k]` = first index whose cumulative weight exceeds `k / guide.len()`.
    guide: Vec<u32>,
}

impl Weighted {
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect::<Vec<_>>();
        let cumulative: Vec<f64> = cumulative.into_iter().map(|c| c / total).collect();
        let buckets = cumulative.len().max(1);
        let last = cumulative.len().saturating_sub(1);
        let guide = (0..buckets)
            .map(|k| {
                let u = k as f64 / buckets as f64;
                cumulative.partition_point(|c| *c <= u).min(last) as u32
            })
            .collect();
        Weighted { cumulative, guide }
    }

    /// Zipf over ranks 1..=n with exponent `s`.
    pub fn zipf(n: usize, s: f64) -> Self {
        Weighted::new((1..=n).map(|k| (k as f64).powf(-s)))
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        let bucket = ((u * self.guide.len() as f64) as usize).min(self.guide.len() - 1);
        let mut i = self.guide[bucket] as usize;
        let last = self.cumulative.len() - 1;
        while i < last && self.cumulative[i] <= u {
            i += 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..5)
            .scan(Rng::new(43), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // pinned: a change to the generator's stream changes every generated file
        assert_eq!(a[0], Rng::new(42).next_u64());
    }

    #[test]
    fn weighted_sampling_follows_weights() {
        let w = Weighted::new([1.0, 3.0]);
        let mut rng = Rng::new(1);
        let ones = (0..40_000).filter(|_| w.sample(&mut rng) == 1).count();
        assert!((29_000..31_000).contains(&ones), "{ones}");
    }

    #[test]
    fn guided_draws_equal_binary_search() {
        for w in [
            Weighted::zipf(30_000, 1.05),
            Weighted::new([0.0, 1.0, 0.0, 2.0, 0.0]),
            Weighted::new([5.0]),
        ] {
            let mut rng = Rng::new(9);
            for _ in 0..100_000 {
                let mut copy = rng.clone();
                let u = copy.unit();
                let by_search = w
                    .cumulative
                    .partition_point(|c| *c <= u)
                    .min(w.cumulative.len() - 1);
                assert_eq!(w.sample(&mut rng), by_search, "u = {u}");
            }
        }
    }

    #[test]
    fn hashed_normals_look_standard() {
        let xs: Vec<f64> = (0..20_000u64)
            .map(|i| normal_from_hash(mix(&[i])))
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
