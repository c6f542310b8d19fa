//! A byte range of a `.bz2` file, decoded on its own: the bzip2 blocks whose magic starts in
//! the range, so several tasks decode one file at once.
//!
//! A bzip2 stream is a header (`BZh1`..`BZh9`), a run of blocks, each opened by the 48-bit
//! magic `0x314159265359` at any bit offset, and an end marker `0x177245385090` with the
//! stream's CRC; pbzip2-style files are several such streams back to back. Blocks are decoded
//! by `crate::bzdecode`, each checked against its CRC. A block it refuses is
//! decoded by libbz2, wrapped in a one-block stream of its own (header, the block, end marker,
//! and the block's CRC as the stream's); libbz2's verdict is final. The stream CRCs are not
//! checked: a part does not see a whole stream, and blocks are contiguous (a block that is
//! lost leaves a span that does not decode).
//!
//! The magic can also occur by chance inside compressed bits. A candidate is taken for a
//! block only if its `origPtr` is in range, and a span that does not decode is joined with
//! the next one (the cut was not a block boundary); a part whose first candidate never
//! decodes skips it, since the previous part decodes that block across it.
//!
//! Lines: a part keeps the lines that start in its blocks, by the rule of `crate::partlines`.

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::bzdecode::{Decoder, be_word};
use crate::partlines::{PartLines, Units, read_more};

const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const END_MAGIC: u64 = 0x1772_4538_5090;
const MASK48: u64 = (1 << 48) - 1;
/// Bits a block candidate needs after its start to be judged: magic, CRC, the randomised
/// flag and the 24-bit `origPtr`.
const BLOCK_HEAD_BITS: u64 = 48 + 32 + 1 + 24;
/// libbz2 refuses a block whose `origPtr` exceeds this at level 9.
const MAX_ORIG_PTR: u64 = 10 + 900_000;
/// Compressed bytes read at a time.
const CHUNK: usize = 1 << 20;
/// Spans joined before a candidate is given up as corrupt.
const MAX_JOINED: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Marker {
    Block,
    End,
}

/// The bytes after a marker's first, as a 16-bit number, for each of its 8 bit offsets: a
/// marker can start in a byte only if the next two are one of these 16 pairs.
static SECOND_AND_THIRD: std::sync::LazyLock<Box<[u64; 1024]>> = std::sync::LazyLock::new(|| {
    let mut bits = Box::new([0u64; 1024]);
    for magic in [BLOCK_MAGIC, END_MAGIC] {
        for offset in 0..8 {
            let pair = (magic >> (24 + offset)) & 0xffff;
            bits[(pair >> 6) as usize] |= 1 << (pair & 63);
        }
    }
    bits
});

/// Candidate markers starting in window bits `[from, to)`, with their bit offsets.
fn scan(window: &[u8], from: u64, to: u64, found: &mut Vec<(u64, Marker)>) {
    let len_bits = window.len() as u64 * 8;
    let pairs = &**SECOND_AND_THIRD;
    let mut byte = (from / 8) as usize;
    while (byte as u64) * 8 < to {
        if let Some(&[second, third]) = window.get(byte + 1..byte + 3) {
            let pair = usize::from(second) << 8 | usize::from(third);
            if pairs[pair >> 6] >> (pair & 63) & 1 == 0 {
                byte += 1;
                continue;
            }
        }
        let w = be_word(window, byte);
        let mut hit = false;
        for o in 0..8 {
            let v = (w >> (16 - o)) & MASK48;
            hit |= (v == BLOCK_MAGIC) | (v == END_MAGIC);
        }
        if hit {
            for o in 0..8u64 {
                let bit = byte as u64 * 8 + o;
                if bit < from || bit >= to || bit + 48 > len_bits {
                    continue;
                }
                match (w >> (16 - o)) & MASK48 {
                    BLOCK_MAGIC => {
                        let plausible = bit + BLOCK_HEAD_BITS <= len_bits
                            && read_bits(window, bit + 48 + 32 + 1, 24) <= MAX_ORIG_PTR;
                        if plausible {
                            found.push((bit, Marker::Block));
                        }
                    }
                    END_MAGIC if bit + 80 <= len_bits => found.push((bit, Marker::End)),
                    _ => {}
                }
            }
        }
        byte += 1;
    }
}

/// Every candidate marker's bit offset in a whole file, in order.
#[cfg(test)]
pub(crate) fn markers(file: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    scan(file, 0, file.len() as u64 * 8, &mut found);
    found.into_iter().map(|(bit, _)| bit).collect()
}

/// Up to 57 bits of `data` starting at bit `at`, most significant first.
fn read_bits(data: &[u8], at: u64, n: u32) -> u64 {
    debug_assert!(n <= 57);
    (be_word(data, (at / 8) as usize) << (at % 8)) >> (64 - n)
}

/// Appends bits to a byte vector, most significant first.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    held: u32,
}

impl BitWriter {
    fn push(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.held += 1;
            if self.held == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.held = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.held > 0 {
            self.out.push((self.acc << (8 - self.held)) as u8);
        }
        self.out
    }
}

/// Decodes the block in window bits `[start, end)` into `out`: by `crate::bzdecode`, or by
/// libbz2 where that refuses it (libbz2 then has the last word).
fn decode_span(
    decoder: &mut Decoder,
    window: &[u8],
    start: u64,
    end: u64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match decoder.decode(window, start, end, out) {
        Ok(()) => return Ok(()),
        Err(why) => tracing::debug!(%why, "a bzip2 block left to libbz2"),
    }
    *out = decode_span_libbz2(window, start, end)?;
    Ok(())
}

/// Decodes the block in window bits `[start, end)` with libbz2, as a stream of its own.
fn decode_span_libbz2(window: &[u8], start: u64, end: u64) -> Result<Vec<u8>, String> {
    let len = end - start;
    let whole = (len / 8) as usize;
    let mut stream = Vec::with_capacity(whole + 20);
    stream.extend_from_slice(b"BZh9");
    let first = (start / 8) as usize;
    let shift = (start % 8) as u32;
    if shift == 0 {
        stream.extend_from_slice(&window[first..first + whole]);
    } else {
        stream.extend(
            window[first..=first + whole]
                .windows(2)
                .map(|p| (p[0] << shift) | (p[1] >> (8 - shift))),
        );
    }
    let mut tail = BitWriter {
        out: stream,
        acc: 0,
        held: 0,
    };
    let rest = (len % 8) as u32;
    if rest > 0 {
        tail.push(read_bits(window, start + whole as u64 * 8, rest), rest);
    }
    tail.push(END_MAGIC, 48);
    // one block: the stream's CRC is the block's
    tail.push(read_bits(window, start + 48, 32), 32);
    let stream = tail.finish();

    let mut decoder = bzip2::Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let consumed = decoder.total_in() as usize;
        let before = (consumed, out.len());
        match decoder.decompress_vec(&stream[consumed..], &mut out) {
            Ok(bzip2::Status::StreamEnd) => return Ok(out),
            Ok(_) if (decoder.total_in() as usize, out.len()) == before => {
                return Err("the block ends early".into());
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The decoded lines of one byte range of a `.bz2` file, as a reader: `source` yields the
/// file's bytes from byte `start`; the part owns the blocks starting in `[start, end)`.
pub(crate) fn part<R: Read>(source: R, start: u64, end: Option<u64>) -> PartLines<Blocks<R>> {
    PartLines::new(
        Blocks {
            source,
            eof: false,
            window: Vec::new(),
            window_start: start,
            scanned: start * 8,
            markers: VecDeque::new(),
            end_bit: end.map_or(u64::MAX, |e| e * 8),
            searching: true,
            decoder: Decoder::default(),
            #[cfg(test)]
            planted: Vec::new(),
        },
        start,
    )
}

/// The blocks of one part, decoded in order.
pub(crate) struct Blocks<R> {
    source: R,
    eof: bool,
    /// Compressed bytes from `window_start`.
    window: Vec<u8>,
    window_start: u64,
    /// Absolute bit up to which markers have been looked for.
    scanned: u64,
    markers: VecDeque<(u64, Marker)>,
    /// Blocks starting at or after this absolute bit are the next part's.
    end_bit: u64,
    /// No block decoded yet: a first candidate that never decodes is not a block start.
    searching: bool,
    decoder: Decoder,
    #[cfg(test)]
    planted: Vec<u64>,
}

impl<R: Read> Blocks<R> {
    /// Reads more compressed bytes and finds the markers in them; false at the end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let had = self.window.len();
        let got = read_more(&mut self.source, &mut self.window, CHUNK)?;
        self.eof = got < CHUNK;
        if self.window_start == 0 && had == 0 && !self.window.starts_with(b"BZh") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a bzip2 file (no BZh header)",
            ));
        }
        let base = self.window_start * 8;
        let len_bits = self.window.len() as u64 * 8;
        let limit = if self.eof {
            len_bits
        } else {
            len_bits.saturating_sub(BLOCK_HEAD_BITS)
        };
        let mut found = Vec::new();
        scan(&self.window, self.scanned - base, limit, &mut found);
        #[cfg(test)]
        found.extend(
            self.planted
                .iter()
                .filter(|&&b| (self.scanned..base + limit).contains(&b))
                .map(|b| (b - base, Marker::Block)),
        );
        found.sort_unstable();
        self.markers
            .extend(found.into_iter().map(|(b, m)| (b + base, m)));
        self.scanned = base + limit.max(self.scanned - base);
        Ok(true)
    }

    /// Markers known from the front, reading on until `n` are known or the file ends.
    fn known(&mut self, n: usize) -> io::Result<usize> {
        while self.markers.len() < n && self.fill()? {}
        Ok(self.markers.len().min(n))
    }

    /// Where the next block candidate starts, end markers passed over.
    fn next_start(&mut self) -> io::Result<Option<u64>> {
        loop {
            if self.known(1)? == 0 {
                return Ok(None);
            }
            match self.markers[0] {
                (_, Marker::End) => {
                    self.markers.pop_front();
                }
                (start, Marker::Block) => return Ok(Some(start)),
            }
        }
    }

    /// The next block at or after the part's start: its start bit, its bytes into `out`.
    fn next_block(&mut self, out: &mut Vec<u8>) -> io::Result<Option<u64>> {
        loop {
            let Some(start) = self.next_start()? else {
                return Ok(None);
            };
            let base = self.window_start * 8;
            let mut failure = String::new();
            for joined in 1..=MAX_JOINED {
                if self.known(joined + 1)? <= joined {
                    failure = "the file ends inside it".into();
                    break;
                }
                let end = self.markers[joined].0;
                match decode_span(
                    &mut self.decoder,
                    &self.window,
                    start - base,
                    end - base,
                    out,
                ) {
                    Ok(()) => {
                        self.markers.drain(..joined);
                        self.searching = false;
                        self.compact();
                        return Ok(Some(start));
                    }
                    Err(e) => failure = e,
                }
            }
            if self.searching && start > 32 && self.markers.len() > 1 {
                // not a block start: the previous part decodes the block this lies in
                self.markers.pop_front();
                continue;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the bzip2 block at byte {} does not decode: {failure}",
                    start / 8
                ),
            ));
        }
    }

    /// Drops compressed bytes before the first marker still needed.
    fn compact(&mut self) {
        let keep = self.markers.front().map_or(self.scanned, |m| m.0) / 8;
        let drop = (keep - self.window_start) as usize;
        // rarely, so that the bytes kept are not moved for every block
        if drop >= CHUNK {
            self.window.drain(..drop.min(self.window.len()));
            self.window_start += drop as u64;
        }
    }
}

impl<R: Read> Units for Blocks<R> {
    fn next(&mut self, skipping: bool, out: &mut Vec<u8>) -> io::Result<Option<bool>> {
        if skipping && self.next_start()?.is_none_or(|start| start >= self.end_bit) {
            // no block starts in the range: it owns no line, and nothing need be decoded
            return Ok(None);
        }
        Ok(self.next_block(out)?.map(|start| start < self.end_bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bzdecode::testing::{compress, xorshift};
    use crate::partlines::testing::{self, check};
    use proptest::prelude::*;

    /// Lines of varying length, some long enough to span blocks at level 1.
    fn text(seed: u64, lines: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x = seed | 1;
        for i in 0..lines {
            xorshift(&mut x);
            let len = if i % 997 == 5 {
                150_000
            } else {
                (x % 300) as usize
            };
            out.extend((0..len).map(|j| b'a' + ((x >> (j % 50)) % 26) as u8));
            out.push(if i % 11 == 0 { b'\t' } else { b'x' });
            out.push(b'\n');
        }
        out
    }

    fn read_parts(file: &[u8], range: u64, planted: &[u64]) -> Vec<Vec<u8>> {
        testing::read_parts(file, range, |bytes, start, end| {
            let mut part = part(bytes, start, end);
            part.units_mut().planted = planted.to_vec();
            part
        })
    }

    #[test]
    fn scan_finds_markers_at_every_bit_offset() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data: Vec<u8> = (0..20_000).map(|_| xorshift(&mut x) as u8).collect();
        let mut set = |at: u64, value: u64, n: u32| {
            for i in 0..u64::from(n) {
                let (byte, bit) = ((at + i) / 8, 7 - (at + i) % 8);
                let one = (value >> (u64::from(n) - 1 - i)) & 1 == 1;
                let b = &mut data[byte as usize];
                *b = (*b & !(1 << bit)) | (u8::from(one) << bit);
            }
        };
        let mut planted = Vec::new();
        for k in 0..40u64 {
            let at = 13 + k * 3_989 + k % 8;
            let marker = if k % 3 == 0 {
                Marker::End
            } else {
                Marker::Block
            };
            let magic = if marker == Marker::End {
                END_MAGIC
            } else {
                BLOCK_MAGIC
            };
            set(at, magic, 48);
            set(at + 48, 0, 57); // a plausible origPtr after a block's magic
            planted.push((at, marker));
        }
        let mut found = Vec::new();
        scan(&data, 0, data.len() as u64 * 8, &mut found);
        assert_eq!(found, planted);
    }

    #[test]
    fn parts_of_a_many_block_file_decode_to_the_file_once() {
        let original = text(7, 6_000);
        let file = compress(&original, 1);
        let mut markers = Vec::new();
        scan(&file, 0, file.len() as u64 * 8, &mut markers);
        assert!(markers.len() > 10, "{} markers", markers.len());
        for range in [1_000, 7_777, 40_000, 100_000, file.len() as u64 / 2 + 1] {
            let parts = read_parts(&file, range, &[]);
            check(&original, &parts);
        }
    }

    #[test]
    fn streams_back_to_back_and_a_missing_last_newline() {
        let mut first = text(3, 2_000);
        let second = b"last line without a newline".to_vec();
        let mut file = compress(&first, 1);
        file.extend(compress(&second, 9));
        first.extend(&second);
        for range in [500, 5_000, 33_333] {
            check(&first, &read_parts(&file, range, &[]));
        }
    }

    #[test]
    fn a_false_magic_inside_a_block_is_joined_over() {
        let original = text(11, 4_000);
        let file = compress(&original, 1);
        let mut real = Vec::new();
        scan(&file, 0, file.len() as u64 * 8, &mut real);
        let blocks: Vec<u64> = real
            .iter()
            .filter(|m| m.1 == Marker::Block)
            .map(|m| m.0)
            .collect();
        assert!(blocks.len() > 3);
        // two false starts inside the second block, one inside the third
        let planted = [
            blocks[1] + 12_345,
            blocks[1] + 40_001,
            (blocks[2] + blocks[3]) / 2,
        ];
        for range in [2_000, 9_000, 30_000] {
            check(&original, &read_parts(&file, range, &planted));
        }
    }

    #[test]
    fn truncated_and_foreign_files_fail_with_a_reason() {
        let file = compress(&text(5, 3_000), 1);
        let mut out = Vec::new();
        let cut = &file[..file.len() - 5000];
        let err = part(cut, 0, None)
            .read_to_end(&mut out)
            .expect_err("truncated");
        assert!(err.to_string().contains("ends inside"), "{err}");
        let err = part(&b"plain text\n"[..], 0, None)
            .read_to_end(&mut out)
            .expect_err("not bzip2");
        assert!(err.to_string().contains("not a bzip2 file"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_range_size_reads_every_line_once(seed in 1u64..u64::MAX, lines in 1usize..3_000, range in 64u64..60_000) {
            let original = text(seed, lines);
            let file = compress(&original, 1);
            check(&original, &read_parts(&file, range, &[]));
        }
    }
}
