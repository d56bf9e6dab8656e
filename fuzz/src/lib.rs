//! Helpers shared by qchar's fuzz targets: a small deterministic PRNG and
//! a way to cut an input into chunks, so each target can check that feeding
//! bytes in arbitrary pieces gives the same result as feeding them whole.
//!
//! The cut points are derived from the input itself (a hash of it), not from
//! a header the input must carry: a seed file stays plain protocol text, and
//! every mutation of it also tries a different chunking.

/// SplitMix64: tiny, deterministic, good enough to pick chunk sizes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator seeded from a hash of `data` (FNV-1a).
    pub fn from_data(data: &[u8]) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A chunk length: mostly tiny (1..=8, the cuts that split tokens and
    /// headers), sometimes up to `max`.
    pub fn chunk_len(&mut self, max: usize) -> usize {
        if self.next_u64().is_multiple_of(4) {
            self.range(1, max.max(1))
        } else {
            self.range(1, 8.min(max.max(1)))
        }
    }
}

/// Cuts `data` into consecutive non-empty chunks (lengths from
/// [`Rng::chunk_len`] with `max`). Concatenated, the chunks are `data`.
pub fn chunks<'a>(data: &'a [u8], rng: &mut Rng, max: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.chunk_len(max).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// The directory a target may create files and sockets in:
/// `QCHAR_FUZZ_TMP` (set by the scripts, which remove it afterwards), else
/// `qchar-fuzz-PID` under the system temp directory. Created if missing.
pub fn sandbox_dir() -> std::path::PathBuf {
    let dir = match std::env::var_os("QCHAR_FUZZ_TMP") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("qchar-fuzz-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("sandbox directory");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            let parts = chunks(&data, &mut rng, 40);
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= 40));
            assert_eq!(parts.concat(), data);
        }
        assert!(chunks(&[], &mut Rng::new(1), 8).is_empty());
    }
}
