//! Which decoded bytes a part of a compressed file owns, whatever the units it decodes (bzip2
//! blocks, gzip members).
//!
//! In the stream `S` decoded from the whole file, let `B_k` be where part `k`'s first unit
//! begins. Part 0 starts at 0; part `k > 0` starts after the first `\n` at or after `B_k`. Each
//! part reads through the first `\n` at or after the next part's `B`, i.e. its last line runs
//! into the next part's units. So the parts' bytes are disjoint, contiguous and cover `S`, and
//! each is whole lines: the same lines a single reader sees.

use std::io::{self, BufRead, Read};
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Part `k > 0`: dropping the bytes through the first `\n`.
    Skip,
    Own,
    /// Past the part's own units: the last line, through its `\n`.
    Tail,
    Done,
}

impl State {
    fn at(start: u64) -> State {
        if start == 0 { State::Own } else { State::Skip }
    }
}

/// The bytes of `decoded` the part keeps, moving `state` on. `own`: the unit `decoded` comes
/// from starts in the part's range. Units arrive in file order, split into as many pieces as the
/// decoder likes.
fn cut(state: &mut State, own: bool, decoded: &[u8]) -> Range<usize> {
    // only looked for at the part's two ends
    let newline = || decoded.iter().position(|&b| b == b'\n');
    match (*state, own) {
        (State::Done, _) => 0..0,
        (State::Skip, false) => {
            *state = State::Done;
            0..0
        }
        (State::Skip, true) => match newline() {
            None => 0..0,
            Some(i) => {
                *state = State::Own;
                i + 1..decoded.len()
            }
        },
        (State::Own, true) => 0..decoded.len(),
        (State::Own | State::Tail, false) | (State::Tail, true) => match newline() {
            Some(i) => {
                *state = State::Done;
                0..i + 1
            }
            None => {
                *state = State::Tail;
                0..decoded.len()
            }
        },
    }
}

/// Appends up to `want` bytes of `source` to `buf`, reading until it has them or the source
/// ends, and returns how many it appended: fewer than `want` means the end.
pub(crate) fn read_more(
    source: &mut impl Read,
    buf: &mut Vec<u8>,
    want: usize,
) -> io::Result<usize> {
    let had = buf.len();
    buf.resize(had + want, 0);
    let mut got = 0;
    while got < want {
        match source.read(&mut buf[had + got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(had + got);
                return Err(e);
            }
        }
    }
    buf.truncate(had + got);
    Ok(got)
}

/// A decoder of the units of one part of a file, from the part's start on.
pub(crate) trait Units {
    /// Replaces `out` with the next decoded bytes, in file order, and says whether their unit
    /// starts in the part's range; `None` past the last unit. `skipping`: the part owns no byte
    /// yet, so once no unit starts in its range it owns nothing and the decoder may stop there.
    fn next(&mut self, skipping: bool, out: &mut Vec<u8>) -> io::Result<Option<bool>>;
}

/// The lines one part of a compressed file owns, as a reader. Lines are read straight out of
/// the decoded units, without a second buffer.
pub(crate) struct PartLines<U> {
    units: U,
    state: State,
    out: Vec<u8>,
    at: usize,
}

impl<U: Units> PartLines<U> {
    /// `units` decodes the file from byte `start`, where the part's range begins.
    pub(crate) fn new(units: U, start: u64) -> Self {
        PartLines {
            units,
            state: State::at(start),
            out: Vec::new(),
            at: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn units_mut(&mut self) -> &mut U {
        &mut self.units
    }

    /// Sets `out` to the next bytes this part owns; false when it has no more.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            self.at = 0;
            if self.state == State::Done {
                self.out.clear();
                return Ok(false);
            }
            let skipping = self.state == State::Skip;
            let Some(own) = self.units.next(skipping, &mut self.out)? else {
                self.state = State::Done;
                continue;
            };
            let keep = cut(&mut self.state, own, &self.out);
            self.out.truncate(keep.end);
            self.at = keep.start;
            if self.at < self.out.len() {
                return Ok(true);
            }
        }
    }
}

impl<U: Units> Read for PartLines<U> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let have = self.fill_buf()?;
            let n = buf.len().min(have.len());
            buf[..n].copy_from_slice(&have[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<U: Units> BufRead for PartLines<U> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at >= self.out.len() {
            if !self.advance()? {
                return Ok(&[]);
            }
        }
        Ok(&self.out[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.out.len());
    }
}

/// What the decoders' tests check of their parts.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Read;

    /// `file` read in parts of `range` bytes, each opened by `open(bytes from start, start, end)`.
    pub(crate) fn read_parts<'a, P: Read>(
        file: &'a [u8],
        range: u64,
        open: impl Fn(&'a [u8], u64, Option<u64>) -> P,
    ) -> Vec<Vec<u8>> {
        let size = file.len() as u64;
        (0..size.div_ceil(range))
            .map(|i| {
                let start = i * range;
                let end = (start + range < size).then_some(start + range);
                let mut out = Vec::new();
                open(&file[start as usize..], start, end)
                    .read_to_end(&mut out)
                    .expect("part decodes");
                out
            })
            .collect()
    }

    /// The parts are the original's bytes once, in order, each ending at a line's end.
    pub(crate) fn check(original: &[u8], parts: &[Vec<u8>]) {
        let read = parts.concat();
        let lengths: Vec<usize> = parts.iter().map(Vec::len).collect();
        let differ = read.iter().zip(original).position(|(a, b)| a != b);
        assert!(
            read == original,
            "read {} bytes of {}, first difference at {differ:?}; parts {lengths:?}",
            read.len(),
            original.len()
        );
        // only the part holding the file's last line may end without its newline
        let last = parts.iter().rposition(|p| !p.is_empty()).unwrap_or(0);
        for (i, p) in parts[..last].iter().enumerate() {
            if !p.is_empty() {
                assert_eq!(p.last(), Some(&b'\n'), "part {i} ends inside a line");
            }
        }
    }
}
