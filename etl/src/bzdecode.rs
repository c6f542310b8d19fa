//! bzip2 blocks decoded straight from the compressed bits, several at a time.
//!
//! Decoding is most of a `.bz2` job's CPU, and most of decoding is the inverse BWT: a chain of
//! dependent loads through a table of up to 3.6 MB, larger than this machine's L2, so each step
//! waits on memory. One block's chain keeps one load in flight; walking [`LANES`] blocks'
//! chains in one loop keeps that many, and the walk costs a fraction as much. Huffman codes are
//! read by table lookup.
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

/// A block read up to its inverse BWT: `tt` holds each symbol in its low byte and, once
/// linked, the position of the next in its high bits.
struct Slot {
    tt: Vec<u32>,
    raw: Vec<u8>,
    len: usize,
    orig_ptr: usize,
    crc: u32,
}

/// Decodes blocks, reusing its tables and buffers from block to block.
pub(crate) struct Decoder {
    tables: Vec<Table>,
    selectors: Vec<u8>,
    slots: Vec<Slot>,
}

/// Blocks decoded at once, so chains walked at once. Each holds a table of up to 3.6 MB, so
/// the lanes of every core's task must share the L3 (on this 2-core VM, 32 MiB, and shared with
/// other tenants). A quiet hour here gave a 5M-bid day 25.3 s with 2, 24.5 s with 3 and 29.6 s
/// with 4; a contended one, 31.4 s with 2 against 41.7 s with 3 (BENCHMARKS.md, session 18).
/// Two gives up little when the cache is free and holds up when it is not.
pub(crate) const LANES: usize = 2;
// `decode_many` walks at most four lanes at once
const _: () = assert!(LANES >= 1 && LANES <= 4);

impl Default for Decoder {
    fn default() -> Self {
        let slot = || Slot {
            tt: Vec::new(),
            raw: Vec::new(),
            len: 0,
            orig_ptr: 0,
            crc: 0,
        };
        Self {
            tables: (0..MAX_GROUPS).map(|_| Table::new()).collect(),
            selectors: Vec::with_capacity(MAX_SELECTORS),
            slots: (0..LANES).map(|_| slot()).collect(),
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
        let [result] = self
            .decode_many(data, &[(start, end)], std::slice::from_mut(out))
            .try_into()
            .expect("one span, one result");
        result
    }

    /// Decodes up to [`LANES`] blocks, span `i` into `outs[i]`, walking their chains at once.
    /// Each result stands alone: a refused block does not stop the others.
    pub(crate) fn decode_many(
        &mut self,
        data: &[u8],
        spans: &[(u64, u64)],
        outs: &mut [Vec<u8>],
    ) -> Vec<Result<()>> {
        assert!(spans.len() <= LANES && outs.len() >= spans.len());
        let read: Vec<Result<()>> = spans
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| self.read(i, data, start, end))
            .collect();
        let mut lanes: Vec<&mut Slot> = self
            .slots
            .iter_mut()
            .zip(&read)
            .filter(|(_, r)| r.is_ok())
            .map(|(slot, _)| slot)
            .collect();
        for slot in lanes.iter_mut() {
            link(&mut slot.tt[..slot.len]);
        }
        match lanes.len() {
            4 => walk::<4>(&mut lanes),
            3 => walk::<3>(&mut lanes),
            2 => walk::<2>(&mut lanes),
            1 => walk::<1>(&mut lanes),
            _ => {}
        }
        read.into_iter()
            .zip(&self.slots)
            .zip(outs.iter_mut())
            .map(|((r, slot), out)| r.and_then(|()| finish(slot, out)))
            .collect()
    }

    /// Reads one block's header, tables and symbols into slot `which`.
    fn read(&mut self, which: usize, data: &[u8], start: u64, end: u64) -> Result<()> {
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

        let slot = &mut self.slots[which];
        if slot.tt.len() < MAX_BLOCK {
            slot.tt.resize(MAX_BLOCK, 0);
        }
        let tt = &mut slot.tt[..MAX_BLOCK];
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
        slot.len = n;
        slot.orig_ptr = orig_ptr;
        slot.crc = crc;
        Ok(())
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

/// `K` chains in one loop, so that their loads are in flight together; then each one's rest.
fn walk<const K: usize>(lanes: &mut [&mut Slot]) {
    let mut tts: [&[u32]; K] = [&[]; K];
    let mut raws: [&mut [u8]; K] = std::array::from_fn(|_| <&mut [u8]>::default());
    let mut at = [0u32; K];
    for (k, slot) in lanes.iter_mut().enumerate() {
        let Slot {
            tt,
            raw,
            len,
            orig_ptr,
            ..
        } = &mut **slot;
        raw.resize(*len, 0);
        tts[k] = &tt[..*len];
        at[k] = tts[k][*orig_ptr] >> 8;
        raws[k] = &mut raw[..];
    }
    let together = raws.iter().map(|r| r.len()).min().unwrap_or(0);
    #[allow(
        clippy::needless_range_loop,
        reason = "one step of every lane per index, the loads of all lanes issued together"
    )]
    for i in 0..together {
        for k in 0..K {
            let e = tts[k][at[k] as usize];
            raws[k][i] = e as u8;
            at[k] = e >> 8;
        }
    }
    for k in 0..K {
        let (tt, mut p) = (tts[k], at[k]);
        for r in &mut raws[k][together..] {
            let e = tt[p as usize];
            *r = e as u8;
            p = e >> 8;
        }
    }
}

/// Undoes the first run-length stage (four equal bytes, then a count of more) into `out`, and
/// checks the block CRC.
fn finish(slot: &Slot, out: &mut Vec<u8>) -> Result<()> {
    let raw = &slot.raw[..slot.len];
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
    if crc32(out) != slot.crc {
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

    fn decode_all(file: &[u8], lanes: usize) -> Vec<u8> {
        let spans = block_spans(file);
        let mut d = Decoder::default();
        let mut all = Vec::new();
        for c in spans.chunks(lanes) {
            let mut outs = vec![Vec::new(); c.len()];
            for r in d.decode_many(file, c, &mut outs) {
                r.expect("decodes");
            }
            all.extend(outs.concat());
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
            // repeated to a few blocks, so that both walks and their tails run
            let bytes = std::fs::read(&path).expect("sample");
            let text: Vec<u8> = bytes.iter().copied().cycle().take(2_500_000).collect();
            let file = compress(&text, 9);
            for lanes in 1..=LANES {
                assert_eq!(decode_all(&file, lanes), text, "{}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 3, "{seen} samples in {}", dir.display());
    }

    #[test]
    fn a_block_of_one_byte_value_and_long_runs() {
        for text in [vec![b'a'; 2_000_000], vec![7u8; 1], b"aaaab".to_vec()] {
            let file = compress(&text, 9);
            assert_eq!(decode_all(&file, 1), text);
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
        // among others at once, a refused block leaves the rest decoded
        let mut outs = vec![Vec::new(); 2];
        let results = d.decode_many(&file, &[(s, e + 1), spans[2]], &mut outs);
        assert!(results[0].is_err() && results[1].is_ok());
        let mut one = Vec::new();
        d.decode(&file, spans[2].0, spans[2].1, &mut one)
            .expect("alone");
        assert_eq!(outs[1], one);
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
            let spans = &spans[..spans.len().min(LANES)];
            let mut d = Decoder::default();
            let mut clean = vec![Vec::new(); spans.len()];
            for r in d.decode_many(&file, spans, &mut clean) {
                prop_assert!(r.is_ok());
            }
            for (at, bit) in &flips {
                let at = at % file.len();
                file[at] ^= 1 << bit;
            }
            file.truncate(file.len() - cut % (file.len() / 2));
            let wrong: Vec<(u64, u64)> = spans.iter().map(|&(s, e)| (s + shift % 3, e + shift)).collect();
            let mut outs = vec![Vec::new(); spans.len()];
            for (asked, exact) in [(spans, true), (&wrong[..], shift == 0)] {
                let results = d.decode_many(&file, asked, &mut outs);
                for ((r, out), want) in results.iter().zip(&outs).zip(&clean) {
                    // an output only for the very block asked for, intact
                    if r.is_ok() {
                        prop_assert!(exact);
                        prop_assert_eq!(out, want);
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
            prop_assert_eq!(decode_all(&file, 1 + (seed % LANES as u64) as usize), text);
        }
    }
}
