//! bzip2 blocks decoded straight from the compressed bits.
//!
//! Decoding is most of a `.bz2` job's CPU, and most of decoding was the inverse BWT: a chain of
//! dependent loads through a table of up to 3.6 MB, larger than this machine's L2, so each step
//! waits on memory. Walked from its start, a block's chain keeps one load in flight. Here it is
//! cut at marked entries into [`SEGMENTS`] pieces, [`CHAINS`] of them walked in one loop, so that
//! many loads are in flight through the one table; the pieces are then put in order. Huffman
//! codes are read by table lookup.
//!
//! This decodes what bzip2 and its kin write. A block it refuses (randomised blocks from bzip2
//! 0.9.0, anything corrupt, a span that is not exactly one block) goes to libbz2, which has the
//! last word on errors (`crate::bzblocks`). An output is only ever returned with its block CRC
//! checked.

use std::fmt;

const MAX_BLOCK: usize = 900_000;
const MAX_GROUPS: usize = 6;
const MAX_ALPHA: usize = 258;
const MAX_CODE_LEN: u32 = 20;
/// bzip2 1.0.8 reads up to 2^15 selectors but uses only this many.
const MAX_SELECTORS: usize = 18_002;
const GROUP_SIZE: u32 = 50;
const LUT_BITS: u32 = 10;

/// Why this decoder left a block to libbz2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

type Result<T> = std::result::Result<T, Refused>;

/// Reads bits most significant first from a byte slice; bits past its end read as zeros, and
/// the caller checks the position against the span's end.
struct Bits<'a> {
    data: &'a [u8],
    pos: u64,
}

impl Bits<'_> {
    /// The next `n` bits, 1 <= n <= 32, without consuming them.
    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        let word = be_word(self.data, (self.pos / 8) as usize);
        ((word << (self.pos % 8)) >> (64 - n)) as u32
    }

    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.pos += u64::from(n);
        v
    }

    fn bit(&mut self) -> bool {
        self.take(1) == 1
    }
}

/// The eight bytes from `byte` as a big-endian number, zeros past the end of `data`.
#[inline(always)]
pub(crate) fn be_word(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..byte + 8) {
        Some(eight) => u64::from_be_bytes(eight.try_into().expect("eight bytes")),
        None => {
            let mut eight = [0u8; 8];
            let tail = data.get(byte..).unwrap_or_default();
            let have = tail.len().min(8);
            eight[..have].copy_from_slice(&tail[..have]);
            u64::from_be_bytes(eight)
        }
    }
}

/// One coding table: short codes by lookup, long ones canonically.
struct Table {
    /// `symbol << 8 | length` for codes of at most `LUT_BITS` bits, by their bits; 0 where the
    /// code is longer.
    lut: [u32; 1 << LUT_BITS],
    first_code: [u32; MAX_CODE_LEN as usize + 1],
    count: [u32; MAX_CODE_LEN as usize + 1],
    offset: [u32; MAX_CODE_LEN as usize + 1],
    /// Symbols in code order.
    perm: [u16; MAX_ALPHA],
}

impl Table {
    fn new() -> Self {
        Self {
            lut: [0; 1 << LUT_BITS],
            first_code: [0; MAX_CODE_LEN as usize + 1],
            count: [0; MAX_CODE_LEN as usize + 1],
            offset: [0; MAX_CODE_LEN as usize + 1],
            perm: [0; MAX_ALPHA],
        }
    }

    /// Codes as bzip2 assigns them: by length, then by symbol.
    fn build(&mut self, lengths: &[u8]) -> Result<()> {
        self.count = [0; MAX_CODE_LEN as usize + 1];
        for &len in lengths {
            self.count[len as usize] += 1;
        }
        let mut code = 0u32;
        let mut at = 0u32;
        for len in 1..=MAX_CODE_LEN as usize {
            self.first_code[len] = code;
            self.offset[len] = at;
            code += self.count[len];
            at += self.count[len];
            if code > 1 << len {
                return Err(Refused("a coding table is oversubscribed"));
            }
            code <<= 1;
        }
        let mut next = self.offset;
        for (sym, &len) in lengths.iter().enumerate() {
            self.perm[next[len as usize] as usize] = sym as u16;
            next[len as usize] += 1;
        }
        self.lut = [0; 1 << LUT_BITS];
        for len in 1..=LUT_BITS as usize {
            for k in 0..self.count[len] {
                let sym = u32::from(self.perm[(self.offset[len] + k) as usize]);
                let code = self.first_code[len] + k;
                let span = 1usize << (LUT_BITS as usize - len);
                let from = (code as usize) << (LUT_BITS as usize - len);
                self.lut[from..from + span].fill(sym << 8 | len as u32);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn decode(&self, bits: &mut Bits<'_>) -> Result<u32> {
        let v = bits.peek(MAX_CODE_LEN);
        let e = self.lut[(v >> (MAX_CODE_LEN - LUT_BITS)) as usize];
        if e != 0 {
            bits.pos += u64::from(e & 0xff);
            return Ok(e >> 8);
        }
        self.decode_long(bits, v)
    }

    #[cold]
    fn decode_long(&self, bits: &mut Bits<'_>, v: u32) -> Result<u32> {
        for len in LUT_BITS + 1..=MAX_CODE_LEN {
            let code = v >> (MAX_CODE_LEN - len);
            let d = code.wrapping_sub(self.first_code[len as usize]);
            if d < self.count[len as usize] {
                bits.pos += u64::from(len);
                return Ok(u32::from(
                    self.perm[(self.offset[len as usize] + d) as usize],
                ));
            }
        }
        Err(Refused("no code matches"))
    }
}

/// A block's header fields, once its symbols are read.
struct Block {
    len: usize,
    orig_ptr: usize,
    crc: u32,
}

/// Decodes blocks, reusing its tables and buffers from block to block.
pub(crate) struct Decoder {
    tables: Vec<Table>,
    selectors: Vec<u8>,
    /// Each symbol of the block in its low byte and, once linked, the position of the next in
    /// its high bits.
    tt: Vec<u32>,
    /// The block before its first run-length stage is undone.
    raw: Vec<u8>,
    walker: Walker,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            tables: (0..MAX_GROUPS).map(|_| Table::new()).collect(),
            selectors: Vec::with_capacity(MAX_SELECTORS),
            tt: Vec::new(),
            raw: Vec::new(),
            walker: Walker::default(),
        }
    }
}

impl Decoder {
    /// Decodes the block in `data` bits `[start, end)` into `out` (replacing its contents).
    pub(crate) fn decode(
        &mut self,
        data: &[u8],
        start: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let block = self.read(data, start, end)?;
        let tt = &mut self.tt[..block.len];
        link(tt);
        self.walker.walk(tt, block.orig_ptr, &mut self.raw)?;
        finish(&self.raw, block.crc, out)
    }

    /// Reads one block's header, tables and symbols into `tt`.
    // each stage runs once per block: out of line, a profile names it
    #[inline(never)]
    fn read(&mut self, data: &[u8], start: u64, end: u64) -> Result<Block> {
        let mut bits = Bits { data, pos: start };
        if u64::from(bits.take(24)) << 24 | u64::from(bits.take(24)) != 0x3141_5926_5359 {
            return Err(Refused("no block magic"));
        }
        let crc = bits.take(32);
        if bits.bit() {
            return Err(Refused("a randomised block"));
        }
        let orig_ptr = bits.take(24) as usize;

        // the byte values in use, in order
        let mut unseq = [0u8; 256];
        let mut in_use = 0usize;
        let groups_used = bits.take(16);
        for g in 0..16 {
            if groups_used & (0x8000 >> g) != 0 {
                let present = bits.take(16);
                for b in 0..16 {
                    if present & (0x8000 >> b) != 0 {
                        unseq[in_use] = (g * 16 + b) as u8;
                        in_use += 1;
                    }
                }
            }
        }
        if in_use == 0 {
            return Err(Refused("no byte value in use"));
        }
        let alpha = in_use + 2;

        let n_groups = bits.take(3) as usize;
        if !(2..=MAX_GROUPS).contains(&n_groups) {
            return Err(Refused("a bad number of coding tables"));
        }
        let n_selectors = bits.take(15) as usize;
        if n_selectors == 0 {
            return Err(Refused("no selectors"));
        }
        let mut order: [u8; MAX_GROUPS] = [0, 1, 2, 3, 4, 5];
        self.selectors.clear();
        for _ in 0..n_selectors {
            let mut j = 0usize;
            while bits.bit() {
                j += 1;
                if j >= n_groups {
                    return Err(Refused("a selector out of range"));
                }
            }
            let v = order[j];
            order.copy_within(0..j, 1);
            order[0] = v;
            if self.selectors.len() < MAX_SELECTORS {
                self.selectors.push(v);
            }
            if bits.pos > end {
                return Err(Refused("the selectors run past the span"));
            }
        }

        let mut lengths = [0u8; MAX_ALPHA];
        for t in 0..n_groups {
            let mut len = bits.take(5) as i32;
            for l in lengths.iter_mut().take(alpha) {
                loop {
                    if !(1..=MAX_CODE_LEN as i32).contains(&len) {
                        return Err(Refused("a code length out of range"));
                    }
                    if !bits.bit() {
                        break;
                    }
                    len += if bits.bit() { -1 } else { 1 };
                }
                *l = len as u8;
            }
            self.tables[t].build(&lengths[..alpha])?;
            if bits.pos > end {
                return Err(Refused("the tables run past the span"));
            }
        }

        if self.tt.len() < MAX_BLOCK {
            self.tt.resize(MAX_BLOCK, 0);
        }
        let tt = &mut self.tt[..MAX_BLOCK];
        let eob = in_use as u32 + 1;
        let mut mtf = [0u8; 256];
        mtf[..in_use].copy_from_slice(&unseq[..in_use]);
        let mut n = 0usize;
        let mut run = 0usize;
        let mut weight = 1usize;
        let mut selector = 0usize;
        let mut left = 0u32;
        let mut table = &self.tables[0];
        loop {
            if left == 0 {
                let Some(&t) = self.selectors.get(selector) else {
                    return Err(Refused("the selectors run out"));
                };
                if usize::from(t) >= n_groups {
                    return Err(Refused("a selector out of range"));
                }
                table = &self.tables[usize::from(t)];
                selector += 1;
                left = GROUP_SIZE;
                if bits.pos > end {
                    return Err(Refused("the symbols run past the span"));
                }
            }
            left -= 1;
            let sym = table.decode(&mut bits)?;
            if sym <= 1 {
                // RUNA adds the weight, RUNB twice the weight: zeros counted in bijective base 2
                run += weight << sym;
                weight <<= 1;
                if run > MAX_BLOCK {
                    return Err(Refused("a run longer than a block"));
                }
                continue;
            }
            if run > 0 {
                if n + run > MAX_BLOCK {
                    return Err(Refused("a block longer than 900k"));
                }
                tt[n..n + run].fill(u32::from(mtf[0]));
                n += run;
                run = 0;
                weight = 1;
            }
            if sym == eob {
                break;
            }
            let k = (sym - 1) as usize;
            if k >= in_use {
                return Err(Refused("a symbol out of range"));
            }
            let v = mtf[k];
            move_to_front(&mut mtf, k);
            if n >= MAX_BLOCK {
                return Err(Refused("a block longer than 900k"));
            }
            tt[n] = u32::from(v);
            n += 1;
        }
        if bits.pos != end {
            return Err(Refused("the block does not end where the next begins"));
        }
        if orig_ptr >= n {
            return Err(Refused("origPtr out of range"));
        }
        Ok(Block {
            len: n,
            orig_ptr,
            crc,
        })
    }
}

/// Moves `mtf[k]` to the front, sixteen bytes at a time from the back. Byte by byte, or by
/// `copy_within`, this was a memmove call per symbol: 6% of a `.bz2` job.
#[inline(always)]
fn move_to_front(mtf: &mut [u8; 256], k: usize) {
    let v = mtf[k];
    let mut j = k;
    while j >= 16 {
        let chunk: [u8; 16] = mtf[j - 16..j].try_into().expect("sixteen bytes");
        mtf[j - 15..=j].copy_from_slice(&chunk);
        j -= 16;
    }
    // the first 16 as one number: bytes 0..j move up one, v goes first, the rest stay
    let head = u128::from_le_bytes(mtf[..16].try_into().expect("sixteen bytes"));
    let stay = if j >= 15 { 0 } else { !0u128 << (8 * (j + 1)) };
    let moved = head << 8 | u128::from(v);
    mtf[..16].copy_from_slice(&(moved & !stay | head & stay).to_le_bytes());
}

/// Links each symbol to the next in the original order (the BWT's inverse, as a chain).
#[inline(never)]
fn link(tt: &mut [u32]) {
    let mut counts = [0u32; 256];
    for &e in tt.iter() {
        counts[(e & 0xff) as usize] += 1;
    }
    let mut at = [0u32; 256];
    let mut sum = 0;
    for (a, c) in at.iter_mut().zip(counts) {
        *a = sum;
        sum += c;
    }
    for i in 0..tt.len() {
        let b = (tt[i] & 0xff) as usize;
        let j = at[b] as usize;
        tt[j] |= (i as u32) << 8;
        at[b] += 1;
    }
}

/// An entry's spare top bit, set on the entries after which a segment begins. Links are
/// below 2^20 and symbols one byte, so bits 28 to 31 are otherwise clear.
const MARK: u32 = 1 << 31;
const LINK: u32 = (1 << 20) - 1;
/// Segments a full block's chain is cut into: enough that the last few, walked while the other
/// chains have run dry, are a small part of the block.
const SEGMENTS: usize = 192;
/// Segments walked at once, all through one table. The first 200 blocks of the 5M-bid day, one
/// process per core, took 1.9-2.3 s with 8 and 2.1-2.8 s with 4, against 3.0-5.8 s when two
/// whole blocks' chains were walked at once with a table each (BENCHMARKS.md, session 19).
const CHAINS: usize = 8;

/// One piece of a block's chain, from the entry after a mark to the next mark.
#[derive(Clone, Copy, Default)]
struct Segment {
    /// The marked entry whose successor is the segment's first.
    after: u32,
    /// The marked entry the segment ends on.
    until: u32,
    chain: u32,
    from: u32,
    len: u32,
}

/// Walks a linked block's chain in segments, reusing its buffers from block to block.
#[derive(Default)]
struct Walker {
    /// The marked entries, in order.
    marks: Vec<u32>,
    /// One per mark, in the same order.
    segments: Vec<Segment>,
    /// What each chain walked, segment after segment.
    chains: [Vec<u8>; CHAINS],
}

impl Walker {
    /// Writes the symbols of the chain that starts after `orig_ptr` into `raw`, in order. A
    /// chain that does not come back to `orig_ptr` through every entry (a damaged block) is
    /// refused.
    fn walk(&mut self, tt: &mut [u32], orig_ptr: usize, raw: &mut Vec<u8>) -> Result<()> {
        let len = tt.len();
        self.marks.clear();
        self.marks
            .extend((0..SEGMENTS).map(|i| (i * len / SEGMENTS) as u32));
        // the text ends on origPtr's entry, so the first segment is the one after it
        self.marks.push(orig_ptr as u32);
        self.marks.sort_unstable();
        self.marks.dedup();
        self.segments.clear();
        for &m in &self.marks {
            tt[m as usize] |= MARK;
            self.segments.push(Segment {
                after: m,
                ..Segment::default()
            });
        }
        let mut chains = self.chains.each_mut();
        walk_chains(tt, &mut self.segments, &mut chains);

        raw.clear();
        let mut at = self.at(orig_ptr as u32);
        // every mark ends exactly one segment, so this comes back to origPtr within as many
        for _ in 0..self.segments.len() {
            let s = self.segments[at];
            let from = s.from as usize;
            raw.extend_from_slice(&self.chains[s.chain as usize][from..from + s.len as usize]);
            if s.until as usize == orig_ptr {
                break;
            }
            at = self.at(s.until);
        }
        if raw.len() != len {
            return Err(Refused("the chain misses some of the block"));
        }
        Ok(())
    }

    fn at(&self, mark: u32) -> usize {
        self.marks
            .binary_search(&mark)
            .expect("a segment ends on a mark")
    }
}

/// Walks every segment, `K` at a time in one loop so that their loads are in flight together;
/// a chain that ends its segment takes the next one not yet walked. Segments never overlap
/// (each stops on the mark before any other's first entry), so all of them together write at
/// most one byte per entry.
#[inline(never)]
fn walk_chains<const K: usize>(
    tt: &[u32],
    segments: &mut [Segment],
    chains: &mut [&mut Vec<u8>; K],
) {
    const IDLE: usize = usize::MAX;
    // what a chain may hold before it grows: its share, with room for uneven segments
    let share = tt.len() / K + tt.len() / (2 * K) + 64;
    let mut at = [0u32; K];
    let mut n = [0usize; K];
    let mut walking = [IDLE; K];
    let mut next = 0;
    // chain `k`, with `from` bytes written, takes the next segment not yet walked: the segment
    // and the position of its first entry, or IDLE when none is left
    let take = |k: usize, from: usize, next: &mut usize, segments: &mut [Segment]| {
        let Some(s) = segments.get_mut(*next) else {
            return (IDLE, 0);
        };
        s.chain = k as u32;
        s.from = from as u32;
        *next += 1;
        (*next - 1, (tt[s.after as usize] >> 8) & LINK)
    };
    for k in 0..K {
        (walking[k], at[k]) = take(k, 0, &mut next, segments);
    }
    let mut busy = walking.iter().filter(|&&w| w != IDLE).count();
    while busy > 0 {
        for k in 0..K {
            if walking[k] == IDLE {
                continue;
            }
            let e = tt[at[k] as usize];
            if n[k] == chains[k].len() {
                grow(chains[k], share);
            }
            chains[k][n[k]] = e as u8;
            n[k] += 1;
            if e & MARK == 0 {
                at[k] = e >> 8;
                continue;
            }
            let done = &mut segments[walking[k]];
            done.until = at[k];
            done.len = n[k] as u32 - done.from;
            (walking[k], at[k]) = take(k, n[k], &mut next, segments);
            if walking[k] == IDLE {
                busy -= 1;
            }
        }
    }
}

/// Grows a chain's buffer as far as it is used: sized for a whole block up front, every part of
/// a file would zero `CHAINS` times a block's bytes.
#[cold]
fn grow(buf: &mut Vec<u8>, share: usize) {
    buf.resize((buf.len() * 2).max(share), 0);
}

/// Undoes the first run-length stage (four equal bytes, then a count of more) into `out`, and
/// checks the block CRC.
#[inline(never)]
fn finish(raw: &[u8], crc: u32, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve(raw.len() + raw.len() / 8);
    let n = raw.len();
    let (mut from, mut i) = (0, 0);
    while i + 3 < n {
        let b = raw[i];
        if raw[i + 1] == b && raw[i + 2] == b && raw[i + 3] == b {
            out.extend_from_slice(&raw[from..i + 4]);
            let more = raw.get(i + 4).copied().unwrap_or(0);
            out.resize(out.len() + usize::from(more), b);
            i += 5;
            from = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&raw[from.min(n)..]);
    if crc32(out) != crc {
        return Err(Refused("the block CRC does not match"));
    }
    Ok(())
}

/// bzip2's CRC: CRC-32 with the bits most significant first, eight bytes at a time.
fn crc32(bytes: &[u8]) -> u32 {
    let t = &*CRC_TABLES;
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let hi = crc ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(hi >> 24) as usize]
            ^ t[6][(hi >> 16 & 0xff) as usize]
            ^ t[5][(hi >> 8 & 0xff) as usize]
            ^ t[4][(hi & 0xff) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = crc << 8 ^ t[0][((crc >> 24) as u8 ^ b) as usize];
    }
    !crc
}

static CRC_TABLES: std::sync::LazyLock<[[u32; 256]; 8]> = std::sync::LazyLock::new(|| {
    let mut t = [[0u32; 256]; 8];
    for (i, entry) in t[0].iter_mut().enumerate() {
        let mut c = (i as u32) << 24;
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                c << 1 ^ 0x04c1_1db7
            } else {
                c << 1
            };
        }
        *entry = c;
    }
    let first = t[0];
    for k in 1..8 {
        let prev = t[k - 1];
        for (entry, p) in t[k].iter_mut().zip(prev) {
            *entry = p << 8 ^ first[(p >> 24) as usize];
        }
    }
    t
});

/// What the bzip2 tests of this crate share.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;

    /// `text` as libbz2 compresses it at `level` (1-9: blocks of 100k to 900k).
    pub(crate) fn compress(text: &[u8], level: u32) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
        e.write_all(text).expect("compress");
        e.finish().expect("finish")
    }

    /// The next of a xorshift sequence: test data that is the same on every run.
    pub(crate) fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{compress, xorshift};
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    /// The spans between a one-stream file's markers (these small files hold no magic by
    /// chance).
    fn block_spans(file: &[u8]) -> Vec<(u64, u64)> {
        let marks = crate::bzblocks::markers(file);
        marks.windows(2).map(|w| (w[0], w[1])).collect()
    }

    fn decode_all(file: &[u8]) -> Vec<u8> {
        let mut d = Decoder::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for (start, end) in block_spans(file) {
            d.decode(file, start, end, &mut out).expect("decodes");
            all.extend_from_slice(&out);
        }
        all
    }

    fn text(seed: u64, len: usize, alphabet: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                let x = xorshift(&mut x);
                // runs, so that both run-length stages are exercised
                if x.is_multiple_of(7) {
                    b'z'
                } else {
                    (x % alphabet) as u8
                }
            })
            .collect()
    }

    #[test]
    fn move_to_front_keeps_every_byte_once() {
        for k in 0..256 {
            let mut mtf: [u8; 256] = std::array::from_fn(|i| i as u8);
            move_to_front(&mut mtf, k);
            let mut want: Vec<u8> = (0..=255).collect();
            let v = want.remove(k);
            want.insert(0, v);
            assert_eq!(mtf.to_vec(), want, "k = {k}");
        }
    }

    #[test]
    fn crc_matches_bzip2s() {
        // bzip2's CRC of "123456789" (CRC-32/BZIP2 check value)
        assert_eq!(crc32(b"123456789"), 0xfc89_1918);
    }

    #[test]
    fn real_logs_decode_as_libbz2_does() {
        let dir = std::env::var_os("RTB_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
            })
            .join("ipinyou-samples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the shared iPinYou samples") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            // repeated to a few blocks, with the decoder's buffers reused from block to block
            let bytes = std::fs::read(&path).expect("sample");
            let text: Vec<u8> = bytes.iter().copied().cycle().take(2_500_000).collect();
            let file = compress(&text, 9);
            assert_eq!(decode_all(&file), text, "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3, "{seen} samples in {}", dir.display());
    }

    #[test]
    fn a_block_of_one_byte_value_and_long_runs() {
        for text in [vec![b'a'; 2_000_000], vec![7u8; 1], b"aaaab".to_vec()] {
            let file = compress(&text, 9);
            assert_eq!(decode_all(&file), text);
        }
    }

    #[test]
    fn a_wrong_span_or_a_flipped_bit_is_refused() {
        let text = text(5, 600_000, 60);
        let mut file = compress(&text, 1);
        let spans = block_spans(&file);
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let (s, e) = spans[1];
        d.decode(&file, s, e, &mut out).expect("the real span");
        assert!(d.decode(&file, s, e + 1, &mut out).is_err());
        assert!(d.decode(&file, s, e - 1, &mut out).is_err());
        assert!(d.decode(&file, s + 1, e, &mut out).is_err());
        // a refused block leaves nothing behind for the next
        let mut next = Vec::new();
        d.decode(&file, spans[2].0, spans[2].1, &mut next)
            .expect("the next block");
        let mut fresh = Vec::new();
        Decoder::default()
            .decode(&file, spans[2].0, spans[2].1, &mut fresh)
            .expect("the next block, by a new decoder");
        assert_eq!(next, fresh);
        let at = ((s + e) / 2 / 8) as usize;
        file[at] ^= 0x10;
        assert!(d.decode(&file, s, e, &mut out).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Damaged files and wrong spans are refused, never a panic or an unchecked output.
        #[test]
        fn damage_is_refused_without_a_panic(seed in 1u64..u64::MAX, flips in proptest::collection::vec((0usize..1 << 20, 0u8..8), 0..4), cut in 0usize..1 << 20, shift in 0u64..64) {
            let text = text(seed, 250_000, 1 + seed % 255);
            let mut file = compress(&text, 1);
            let spans = block_spans(&file);
            let spans = &spans[..spans.len().min(2)];
            let mut d = Decoder::default();
            let mut clean = vec![Vec::new(); spans.len()];
            for (&(s, e), out) in spans.iter().zip(&mut clean) {
                prop_assert!(d.decode(&file, s, e, out).is_ok());
            }
            for (at, bit) in &flips {
                let at = at % file.len();
                file[at] ^= 1 << bit;
            }
            file.truncate(file.len() - cut % (file.len() / 2));
            let wrong: Vec<(u64, u64)> = spans.iter().map(|&(s, e)| (s + shift % 3, e + shift)).collect();
            let mut out = Vec::new();
            for (asked, exact) in [(spans, true), (&wrong[..], shift == 0)] {
                for (&(s, e), want) in asked.iter().zip(&clean) {
                    // an output only for the very block asked for, intact
                    if d.decode(&file, s, e, &mut out).is_ok() {
                        prop_assert!(exact);
                        prop_assert_eq!(&out, want);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_text_decodes_as_libbz2_does(seed in 1u64..u64::MAX, len in 1usize..400_000, alphabet in 1u64..256, level in 1u32..=9) {
            let text = text(seed, len, alphabet);
            let file = compress(&text, level);
            let mut check = Vec::new();
            bzip2::read::BzDecoder::new(&file[..]).read_to_end(&mut check).expect("libbz2");
            prop_assert_eq!(&check, &text);
            prop_assert_eq!(decode_all(&file), text);
        }
    }

    /// The chain walked from its start, one step at a time.
    fn walk_whole(tt: &[u32], orig_ptr: usize) -> Vec<u8> {
        let mut at = (tt[orig_ptr] >> 8) & LINK;
        (0..tt.len())
            .map(|_| {
                let e = tt[at as usize];
                at = (e >> 8) & LINK;
                e as u8
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any permutation as a block's links: one cycle is walked in order, as from its start,
        /// whatever the segments; several cycles are refused, never a panic or a partial text.
        #[test]
        fn segments_walk_a_chain_as_its_start_does(seed in 1u64..u64::MAX, len in 1usize..20_000, one_cycle in any::<bool>()) {
            let mut x = seed | 1;
            let mut next: Vec<u32> = (0..len as u32).collect();
            for i in (1..len).rev() {
                // Sattolo's shuffle gives one cycle; Fisher-Yates most often several
                let bound = if one_cycle { i } else { i + 1 };
                next.swap(i, (xorshift(&mut x) % bound as u64) as usize);
            }
            let tt: Vec<u32> = next.iter().map(|&n| n << 8 | (xorshift(&mut x) % 7) as u32).collect();
            let orig_ptr = (xorshift(&mut x) % len as u64) as usize;
            let mut cycle = 1;
            let mut at = next[orig_ptr] as usize;
            while at != orig_ptr {
                at = next[at] as usize;
                cycle += 1;
            }
            let mut walker = Walker::default();
            let mut raw = Vec::new();
            let result = walker.walk(&mut tt.clone(), orig_ptr, &mut raw);
            if cycle == len {
                prop_assert!(result.is_ok());
                prop_assert_eq!(raw, walk_whole(&tt, orig_ptr));
            } else {
                prop_assert!(result.is_err());
            }
        }
    }
}
