//! A byte range of a `.gz` file, decoded on its own: the gzip members whose header starts in the
//! range, so several tasks decode a file of many members (concatenated `.gz` files, `bgzip`
//! output) at once. A file of one member is decoded by the part it starts in; the others find no
//! member in their range and read nothing more.
//!
//! A member is a header (`1f 8b 08`, flags, optional fields), a deflate stream, and its CRC-32
//! and length. Members are found by that header, which can also occur by chance inside a
//! deflate stream: a candidate is taken for a member only once it has decoded
//! [`VERIFY_BYTES`], or to its end with the CRC and length checked. Garbage fails far sooner
//! (a back-reference before the start of the output, an invalid code); a member taken on its
//! first bytes is still checked at its end, and a mismatch fails the task, never a silent line.
//!
//! Lines: a part keeps the lines that start in its members, by the rule of `crate::partlines`.

use std::collections::VecDeque;
use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::partlines::{PartLines, Units, read_more};

/// Compressed bytes read at a time, and the most decoded bytes handed out at once.
const CHUNK: usize = 1 << 20;
/// Decoded bytes after which a candidate is taken for a member start.
const VERIFY_BYTES: usize = 1 << 20;

/// Compressed bytes from offset `base`, read from `source` as needed. While `pinned` nothing is
/// dropped, so a candidate that fails can be left for the next one.
struct Window<R> {
    source: R,
    eof: bool,
    buf: Vec<u8>,
    base: u64,
    pos: usize,
    pinned: bool,
}

impl<R: Read> Window<R> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads more bytes after those held; false at the end of the source.
    fn more(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if !self.pinned && self.pos >= CHUNK {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let got = read_more(&mut self.source, &mut self.buf, CHUNK)?;
        self.eof = got < CHUNK;
        Ok(got > 0)
    }

    fn seek(&mut self, offset: u64) {
        self.pos = (offset - self.base) as usize;
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.buf.len() && !self.more()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    /// The next header candidate at or after `from` and before `end`.
    fn candidate(&mut self, from: u64, end: u64) -> io::Result<Option<u64>> {
        let mut at = from;
        loop {
            let i = (at - self.base) as usize;
            if at >= end {
                return Ok(None);
            }
            if i + 4 > self.buf.len() {
                if i >= CHUNK {
                    // no candidate before `at`: a range is scanned in bounded memory
                    self.buf.drain(..i);
                    self.base = at;
                    self.pos = 0;
                }
                if !self.more()? {
                    return Ok(None);
                }
                continue;
            }
            match self.buf[i..self.buf.len() - 3]
                .iter()
                .position(|&b| b == 0x1f)
            {
                Some(j) => {
                    let h = &self.buf[i + j..i + j + 4];
                    if h[1] == 0x8b && h[2] == 8 && h[3] & 0xe0 == 0 {
                        let found = at + j as u64;
                        return Ok((found < end).then_some(found));
                    }
                    at += j as u64 + 1;
                }
                None => at = self.base + (self.buf.len() - 3) as u64,
            }
        }
    }
}

/// One member being decoded.
struct Member {
    start: u64,
    inflate: Decompress,
    crc: Crc,
    ended: bool,
}

/// Not a member: a candidate that fails this way is not a member start.
fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The file ends inside a member: it is incomplete, whichever part finds it.
fn cut_short(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

impl Member {
    /// Reads the header at the window's position; `None` at the end of the file.
    fn open<R: Read>(w: &mut Window<R>) -> io::Result<Option<Member>> {
        let start = w.offset();
        let truncated = || corrupt(format!("the gzip header at byte {start} is cut short"));
        let Some(first) = w.byte()? else {
            return Ok(None);
        };
        let mut fixed = [first; 10];
        for b in &mut fixed[1..] {
            *b = w.byte()?.ok_or_else(truncated)?;
        }
        if fixed[..3] != [0x1f, 0x8b, 8] || fixed[3] & 0xe0 != 0 {
            return Err(corrupt(format!(
                "no gzip member at byte {start} (not a gzip file, or bytes after its last member)"
            )));
        }
        let flags = fixed[3];
        if flags & 4 != 0 {
            let lo = w.byte()?.ok_or_else(truncated)?;
            let hi = w.byte()?.ok_or_else(truncated)?;
            for _ in 0..u16::from_le_bytes([lo, hi]) {
                w.byte()?.ok_or_else(truncated)?;
            }
        }
        for flag in [8, 16] {
            if flags & flag != 0 {
                while w.byte()?.ok_or_else(truncated)? != 0 {}
            }
        }
        if flags & 2 != 0 {
            w.byte()?.ok_or_else(truncated)?;
            w.byte()?.ok_or_else(truncated)?;
        }
        Ok(Some(Member {
            start,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            ended: false,
        }))
    }

    /// Decodes up to [`CHUNK`] bytes into `out`; true when the member ended (its CRC and length
    /// checked).
    fn inflate<R: Read>(&mut self, w: &mut Window<R>, out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        out.reserve(CHUNK);
        let start = self.start;
        let bad = |why: &str| format!("the gzip member at byte {start} does not decode: {why}");
        while out.len() < out.capacity() {
            if w.pos == w.buf.len() && !w.more()? {
                return Err(cut_short(bad("the file ends inside it")));
            }
            let (had_in, had_out) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(&w.buf[w.pos..], out, FlushDecompress::None)
                .map_err(|e| corrupt(bad(&e.to_string())))?;
            w.pos += (self.inflate.total_in() - had_in) as usize;
            self.crc.update(&out[had_out..]);
            if status == Status::StreamEnd {
                let mut trailer = [0u8; 8];
                for b in &mut trailer {
                    *b = w
                        .byte()?
                        .ok_or_else(|| cut_short(bad("the file ends in its trailer")))?;
                }
                let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
                let len = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
                if crc != self.crc.sum() || len != self.crc.amount() {
                    return Err(corrupt(bad("its CRC or length does not match its bytes")));
                }
                return Ok(true);
            }
            // a decoder may want more input than the window holds before it gives anything
            if self.inflate.total_in() == had_in && out.len() == had_out && !w.more()? {
                return Err(cut_short(bad("the file ends inside it")));
            }
        }
        Ok(false)
    }
}

/// The decoded lines of one byte range of a `.gz` file, as a reader: `source` yields the
/// file's bytes from byte `start`; the part owns the members starting in `[start, end)`.
pub(crate) fn part<R: Read>(source: R, start: u64, end: Option<u64>) -> PartLines<Members<R>> {
    PartLines::new(
        Members {
            w: Window {
                source,
                eof: false,
                buf: Vec::new(),
                base: start,
                pos: 0,
                pinned: start > 0,
            },
            start,
            end: end.unwrap_or(u64::MAX),
            member: None,
            verified: VecDeque::new(),
        },
        start,
    )
}

/// The members of one part, decoded in order.
pub(crate) struct Members<R> {
    w: Window<R>,
    start: u64,
    /// Members starting at or after this offset are the next part's.
    end: u64,
    member: Option<Member>,
    /// Decoded while verifying the first member, not yet handed out.
    verified: VecDeque<Vec<u8>>,
}

impl<R: Read> Members<R> {
    /// The first member starting in the range, its bytes decoded while it was verified queued
    /// in `verified`; `None` when the range holds none.
    fn find_first(&mut self) -> io::Result<Option<Member>> {
        let mut from = self.start;
        while let Some(at) = self.w.candidate(from, self.end)? {
            self.w.seek(at);
            match self.verify() {
                Ok(member) => {
                    self.w.pinned = false;
                    return Ok(Some(member));
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.verified.clear();
                    from = at + 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Decodes the member at the window's position until [`VERIFY_BYTES`] or its end.
    fn verify(&mut self) -> io::Result<Member> {
        let mut member =
            Member::open(&mut self.w)?.ok_or_else(|| corrupt("no header at a candidate".into()))?;
        let mut decoded = 0;
        while decoded < VERIFY_BYTES && !member.ended {
            let mut out = Vec::new();
            member.ended = member.inflate(&mut self.w, &mut out)?;
            decoded += out.len();
            self.verified.push_back(out);
        }
        Ok(member)
    }
}

impl<R: Read> Units for Members<R> {
    fn next(&mut self, skipping: bool, out: &mut Vec<u8>) -> io::Result<Option<bool>> {
        loop {
            if let Some(bytes) = self.verified.pop_front() {
                // the part's first member, in its range by construction
                *out = bytes;
                return Ok(Some(true));
            }
            match &mut self.member {
                Some(member) if !member.ended => {
                    member.ended = member.inflate(&mut self.w, out)?;
                    return Ok(Some(member.start < self.end));
                }
                _ if skipping && !self.w.pinned && self.w.offset() >= self.end => {
                    // the next member is the next part's, and this part owns no line
                    return Ok(None);
                }
                _ => {
                    self.member = if self.w.pinned {
                        self.find_first()?
                    } else {
                        Member::open(&mut self.w)?
                    };
                    if self.member.is_none() {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partlines::testing::{self, check};
    use flate2::{Compression, GzBuilder};
    use proptest::prelude::*;
    use std::io::Write;

    /// `text` as members of `lines_per_member` lines each (the last one may lack its `\n`),
    /// at `level`, some with a file name, an extra field, a comment and a header CRC.
    fn members(text: &[u8], lines_per_member: usize, level: u32) -> Vec<u8> {
        let mut file = Vec::new();
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        for (i, chunk) in lines.chunks(lines_per_member.max(1)).enumerate() {
            let mut builder = GzBuilder::new();
            if i % 3 == 1 {
                builder = builder
                    .filename("bid.txt")
                    .extra(vec![b'B', b'C', 2, 0, 0, 0])
                    .comment("part");
            }
            let mut e = builder.write(Vec::new(), Compression::new(level));
            e.write_all(&chunk.concat()).expect("compress");
            file.extend(e.finish().expect("finish"));
        }
        file
    }

    /// Lines of varying length; every 7th carries a gzip header's bytes, which a stored
    /// (level 0) member holds verbatim: a false candidate inside a member.
    fn text(seed: u64, lines: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x = seed | 1;
        for i in 0..lines {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = if i % 997 == 5 {
                70_000
            } else {
                (x % 300) as usize
            };
            out.extend((0..len).map(|j| b'a' + ((x >> (j % 50)) % 26) as u8));
            if i % 7 == 3 {
                out.extend([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0x12]);
            }
            out.push(if i % 11 == 0 { b'\t' } else { b'x' });
            out.push(b'\n');
        }
        out
    }

    fn read_parts(file: &[u8], range: u64) -> Vec<Vec<u8>> {
        testing::read_parts(file, range, part)
    }

    #[test]
    fn parts_of_a_many_member_file_decode_to_the_file_once() {
        let original = text(7, 6_000);
        for (lines, level) in [(1, 6), (37, 1), (500, 0), (2_000, 9)] {
            let file = members(&original, lines, level);
            for range in [1_000, 7_777, 40_000, file.len() as u64 / 2 + 1] {
                check(&original, &read_parts(&file, range));
            }
        }
    }

    #[test]
    fn one_member_is_read_by_the_first_part_alone() {
        let original = text(3, 3_000);
        let file = members(&original, usize::MAX, 6);
        let parts = read_parts(&file, 10_000);
        assert!(parts.len() > 5);
        assert!(parts[1..].iter().all(Vec::is_empty));
        check(&original, &parts);
    }

    #[test]
    fn a_missing_last_newline_and_empty_members() {
        let mut original = text(5, 1_000);
        let mut file = members(&original, 100, 6);
        file.extend(
            GzBuilder::new()
                .write(Vec::new(), Compression::new(6))
                .finish()
                .expect("empty member"),
        );
        file.extend(members(b"last line without a newline", 1, 6));
        original.extend(b"last line without a newline");
        for range in [500, 5_000, 33_333] {
            check(&original, &read_parts(&file, range));
        }
    }

    #[test]
    fn truncated_corrupt_and_foreign_files_fail_with_a_reason() {
        let head = members(&text(5, 3_000), 200, 6);
        let last = members(&text(6, 300), usize::MAX, 6);
        let fails = |bytes: &[u8], start: u64, end: Option<u64>| {
            let mut out = Vec::new();
            part(&bytes[start as usize..], start, end)
                .read_to_end(&mut out)
                .expect_err("fails")
                .to_string()
        };
        let cut = [&head[..], &last[..last.len() / 2]].concat();
        let err = fails(&cut, 0, None);
        assert!(err.contains("ends inside"), "{err}");
        // the part owning the cut member fails too, not only a whole-file reader
        let err = fails(&cut, head.len() as u64 - 100, None);
        assert!(err.contains("ends inside"), "{err}");
        let mut flipped = [&head[..], &last[..]].concat();
        let last = flipped.len() - 6;
        flipped[last] ^= 1;
        let err = fails(&flipped, 0, None);
        assert!(err.contains("CRC or length"), "{err}");
        let err = fails(b"plain text\n", 0, None);
        assert!(err.contains("no gzip member at byte 0"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_range_size_reads_every_line_once(
            seed in 1u64..u64::MAX,
            lines in 1usize..3_000,
            per_member in 1usize..400,
            level in 0u32..10,
            range in 64u64..60_000,
        ) {
            let original = text(seed, lines);
            let file = members(&original, per_member, level);
            check(&original, &read_parts(&file, range));
        }
    }
}
