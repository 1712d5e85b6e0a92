//! A tiny deterministic PRNG (xorshift64*) for generated names, so runs are comparable and
//! no dependency is needed.

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Appends a random lower-case label of `min..min + spread` letters to `out`.
    pub fn label(&mut self, out: &mut String, min: usize, spread: u64) {
        let len = min + (self.next() % spread) as usize;
        for _ in 0..len {
            out.push((b'a' + (self.next() % 26) as u8) as char);
        }
    }
}
