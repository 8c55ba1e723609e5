//! IVF, the simple container libvpx and ffmpeg use for raw VP8/VP9 streams.
//!
//! A 32-byte file header (little-endian fields) is followed by frames, each a 12-byte frame header
//! (4-byte size, 8-byte presentation timestamp) and the frame bytes:
//!
//! ```text
//! 0   "DKIF"
//! 4   version (0)            u16
//! 6   header size (32)       u16
//! 8   fourcc ("VP80")        [u8; 4]
//! 12  width, height          u16, u16
//! 16  timebase denominator   u32   (e.g. 30 for 30 fps)
//! 20  timebase numerator     u32   (e.g. 1)
//! 24  frame count            u32
//! 28  unused                 u32
//! ```
//!
//! Readers and writers work over any `Read` / `Write`, so they serve files, pipes and memory alike.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Size of the IVF file header.
pub const IVF_HEADER_LEN: usize = 32;
/// Size of the header before every frame.
pub const IVF_FRAME_HEADER_LEN: usize = 12;
/// The largest frame a reader accepts; anything larger is taken as a corrupt size field.
pub const MAX_IVF_FRAME_LEN: usize = 16 * 1024 * 1024;
/// The largest file header a reader accepts (the header-size field may announce more than 32).
const MAX_IVF_HEADER_LEN: usize = 1024;

/// Where the frame-count field sits in the file header.
const FRAME_COUNT_OFFSET: u64 = 24;

/// The fields of an IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// Format version; 0 is the only one defined.
    pub version: u16,
    /// Codec identifier, e.g. `*b"VP80"`.
    pub fourcc: [u8; 4],
    /// Picture width in pixels.
    pub width: u16,
    /// Picture height in pixels.
    pub height: u16,
    /// Time base denominator (units per second).
    pub timebase_den: u32,
    /// Time base numerator; a pts of `p` is `p * num / den` seconds.
    pub timebase_num: u32,
    /// Number of frames as the header states it (writers that cannot seek leave their guess).
    pub frame_count: u32,
}

impl IvfHeader {
    /// A VP8 header with a `1/den` time base and a frame count of 0 (fixed up by a seekable writer).
    pub fn vp8(width: u16, height: u16, timebase_den: u32) -> IvfHeader {
        IvfHeader {
            version: 0,
            fourcc: *b"VP80",
            width,
            height,
            timebase_den,
            timebase_num: 1,
            frame_count: 0,
        }
    }

    /// The 32 header bytes.
    pub fn to_bytes(&self) -> [u8; IVF_HEADER_LEN] {
        let mut b = [0u8; IVF_HEADER_LEN];
        b[0..4].copy_from_slice(b"DKIF");
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(IVF_HEADER_LEN as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.fourcc);
        b[12..14].copy_from_slice(&self.width.to_le_bytes());
        b[14..16].copy_from_slice(&self.height.to_le_bytes());
        b[16..20].copy_from_slice(&self.timebase_den.to_le_bytes());
        b[20..24].copy_from_slice(&self.timebase_num.to_le_bytes());
        b[24..28].copy_from_slice(&self.frame_count.to_le_bytes());
        b
    }
}

/// Why an IVF stream could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum IvfError {
    /// The file does not start with `DKIF`.
    BadMagic([u8; 4]),
    /// The header-size field is below 32 or implausibly large.
    BadHeaderLen(u16),
    /// The stream ended inside the file header.
    TruncatedHeader,
    /// The stream ended inside frame number `index` (counting from 0).
    TruncatedFrame {
        /// The frame's number, from 0.
        index: u64,
    },
    /// Frame `index` claims `len` bytes, more than [`MAX_IVF_FRAME_LEN`].
    FrameTooLarge {
        /// The frame's number, from 0.
        index: u64,
        /// The length its header claims.
        len: u64,
    },
    /// A frame longer than a 32-bit size field can describe was given to the writer.
    FrameTooLong(usize),
    /// An I/O error from the underlying reader or writer.
    Io(io::Error),
}

impl fmt::Display for IvfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IvfError::BadMagic(m) => {
                write!(f, "not an IVF file: magic {m:02x?}, expected \"DKIF\"")
            }
            IvfError::BadHeaderLen(n) => write!(f, "IVF header size {n} is not usable"),
            IvfError::TruncatedHeader => f.write_str("IVF file ends inside its 32-byte header"),
            IvfError::TruncatedFrame { index } => {
                write!(f, "IVF file ends inside frame {index}")
            }
            IvfError::FrameTooLarge { index, len } => write!(
                f,
                "IVF frame {index} claims {len} bytes, more than the {MAX_IVF_FRAME_LEN}-byte limit"
            ),
            IvfError::FrameTooLong(n) => {
                write!(f, "frame of {n} bytes does not fit an IVF size field")
            }
            IvfError::Io(e) => write!(f, "IVF I/O error: {e}"),
        }
    }
}

impl std::error::Error for IvfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IvfError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for IvfError {
    fn from(e: io::Error) -> Self {
        IvfError::Io(e)
    }
}

/// Reads up to `buf.len()` bytes, stopping early only at end of stream; returns how many were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads IVF frames from any byte source.
#[derive(Debug)]
pub struct IvfReader<R> {
    inner: R,
    header: IvfHeader,
    index: u64,
}

impl<R: Read> IvfReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut inner: R) -> Result<Self, IvfError> {
        let mut b = [0u8; IVF_HEADER_LEN];
        if read_full(&mut inner, &mut b)? < IVF_HEADER_LEN {
            return Err(IvfError::TruncatedHeader);
        }
        let magic = [b[0], b[1], b[2], b[3]];
        if &magic != b"DKIF" {
            return Err(IvfError::BadMagic(magic));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let header_len = u16_at(6);
        if usize::from(header_len) < IVF_HEADER_LEN || usize::from(header_len) > MAX_IVF_HEADER_LEN
        {
            return Err(IvfError::BadHeaderLen(header_len));
        }
        let extra = u64::from(header_len) - IVF_HEADER_LEN as u64;
        if extra > 0 {
            let skipped = io::copy(&mut (&mut inner).take(extra), &mut io::sink())?;
            if skipped < extra {
                return Err(IvfError::TruncatedHeader);
            }
        }
        let header = IvfHeader {
            version: u16_at(4),
            fourcc: [b[8], b[9], b[10], b[11]],
            width: u16_at(12),
            height: u16_at(14),
            timebase_den: u32_at(16),
            timebase_num: u32_at(20),
            frame_count: u32_at(24),
        };
        Ok(IvfReader {
            inner,
            header,
            index: 0,
        })
    }

    /// The file header.
    pub fn header(&self) -> &IvfHeader {
        &self.header
    }

    /// Reads the next frame into `data` (replacing its contents) and returns its pts, or `None` at
    /// a clean end of the file.
    pub fn read_frame_into(&mut self, data: &mut Vec<u8>) -> Result<Option<u64>, IvfError> {
        let mut fh = [0u8; IVF_FRAME_HEADER_LEN];
        let got = read_full(&mut self.inner, &mut fh)?;
        if got == 0 {
            return Ok(None);
        }
        let index = self.index;
        if got < IVF_FRAME_HEADER_LEN {
            return Err(IvfError::TruncatedFrame { index });
        }
        let len = u64::from(u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]));
        let mut pts = [0u8; 8];
        pts.copy_from_slice(&fh[4..12]);
        let pts = u64::from_le_bytes(pts);
        if len > MAX_IVF_FRAME_LEN as u64 {
            return Err(IvfError::FrameTooLarge { index, len });
        }
        data.clear();
        // Read through `take` so a lying size field on a short file costs no more memory than the
        // bytes that are really there.
        let read = (&mut self.inner).take(len).read_to_end(data)?;
        if (read as u64) < len {
            return Err(IvfError::TruncatedFrame { index });
        }
        self.index += 1;
        Ok(Some(pts))
    }

    /// Reads the next frame as `(pts, data)`, or `None` at a clean end of the file.
    pub fn read_frame(&mut self) -> Result<Option<(u64, Vec<u8>)>, IvfError> {
        let mut data = Vec::new();
        Ok(self.read_frame_into(&mut data)?.map(|pts| (pts, data)))
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Iterator for IvfReader<R> {
    type Item = Result<(u64, Vec<u8>), IvfError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_frame().transpose()
    }
}

/// Writes IVF frames to any byte sink.
///
/// Made with [`IvfWriter::new`], the frame count in the header stays what the caller put there.
/// Made with [`IvfWriter::new_seekable`], [`IvfWriter::finish`] goes back and writes the number of
/// frames actually written.
pub struct IvfWriter<W: Write> {
    inner: W,
    frames: u32,
    fix_count: Option<FixCount<W>>,
}

/// Writes the final frame count into a seekable sink whose header began at the given position.
type FixCount<W> = (u64, fn(&mut W, u64, u32) -> io::Result<()>);

fn write_count_at<W: Write + Seek>(w: &mut W, header_pos: u64, count: u32) -> io::Result<()> {
    let end = w.stream_position()?;
    w.seek(SeekFrom::Start(header_pos + FRAME_COUNT_OFFSET))?;
    w.write_all(&count.to_le_bytes())?;
    w.seek(SeekFrom::Start(end))?;
    Ok(())
}

impl<W: Write> fmt::Debug for IvfWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IvfWriter")
            .field("frames", &self.frames)
            .field("seekable", &self.fix_count.is_some())
            .finish()
    }
}

impl<W: Write> IvfWriter<W> {
    /// Writes `header` and returns a writer that leaves the header's frame count as given.
    pub fn new(mut inner: W, header: &IvfHeader) -> Result<Self, IvfError> {
        inner.write_all(&header.to_bytes())?;
        Ok(IvfWriter {
            inner,
            frames: 0,
            fix_count: None,
        })
    }

    /// Appends one frame with presentation time `pts` (in time-base units).
    pub fn write_frame(&mut self, pts: u64, data: &[u8]) -> Result<(), IvfError> {
        let len = u32::try_from(data.len()).map_err(|_| IvfError::FrameTooLong(data.len()))?;
        let mut fh = [0u8; IVF_FRAME_HEADER_LEN];
        fh[0..4].copy_from_slice(&len.to_le_bytes());
        fh[4..12].copy_from_slice(&pts.to_le_bytes());
        self.inner.write_all(&fh)?;
        self.inner.write_all(data)?;
        self.frames = self.frames.saturating_add(1);
        Ok(())
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u32 {
        self.frames
    }

    /// Fixes up the frame count when the sink is seekable, flushes, and gives the sink back.
    pub fn finish(mut self) -> Result<W, IvfError> {
        if let Some((pos, fix)) = self.fix_count {
            fix(&mut self.inner, pos, self.frames)?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Writes `header` at the sink's current position; [`Self::finish`] will store the real frame
    /// count there.
    pub fn new_seekable(mut inner: W, header: &IvfHeader) -> Result<Self, IvfError> {
        let pos = inner.stream_position()?;
        let mut w = IvfWriter::new(inner, header)?;
        w.fix_count = Some((pos, write_count_at::<W>));
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample_frames() -> Vec<(u64, Vec<u8>)> {
        vec![
            (0, vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]),
            (1, vec![0x11; 300]),
            (2, vec![]),
            (u64::MAX, vec![0x31, 0x00]),
        ]
    }

    #[test]
    fn round_trip_seekable_fixes_count() {
        let header = IvfHeader::vp8(640, 480, 30);
        let mut w = IvfWriter::new_seekable(Cursor::new(Vec::new()), &header).unwrap();
        for (pts, f) in sample_frames() {
            w.write_frame(pts, &f).unwrap();
        }
        assert_eq!(w.frames_written(), 4);
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(&bytes[0..4], b"DKIF");
        assert_eq!(
            bytes.len(),
            32 + sample_frames()
                .iter()
                .map(|f| 12 + f.1.len())
                .sum::<usize>()
        );

        let r = IvfReader::new(&bytes[..]).unwrap();
        let h = *r.header();
        assert_eq!(h.fourcc, *b"VP80");
        assert_eq!((h.width, h.height), (640, 480));
        assert_eq!((h.timebase_den, h.timebase_num), (30, 1));
        assert_eq!(h.frame_count, 4);
        assert_eq!(h.version, 0);
        let frames: Vec<_> = r.collect::<Result<_, _>>().unwrap();
        assert_eq!(frames, sample_frames());
    }

    #[test]
    fn plain_writer_keeps_given_count() {
        let mut header = IvfHeader::vp8(320, 240, 90000);
        header.frame_count = 7;
        let mut w = IvfWriter::new(Vec::new(), &header).unwrap();
        w.write_frame(3000, &[1, 2, 3]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = IvfReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(r.header().frame_count, 7);
        assert_eq!(r.read_frame().unwrap(), Some((3000, vec![1, 2, 3])));
        assert!(r.read_frame().unwrap().is_none());
        // Reading past the end stays at the end.
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn seekable_writer_after_a_prefix() {
        let mut cur = Cursor::new(Vec::new());
        cur.write_all(b"prefix").unwrap();
        let mut w = IvfWriter::new_seekable(cur, &IvfHeader::vp8(1, 1, 1)).unwrap();
        w.write_frame(0, &[9]).unwrap();
        w.write_frame(1, &[8]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let r = IvfReader::new(&bytes[6..]).unwrap();
        assert_eq!(r.header().frame_count, 2);
        assert_eq!(r.count(), 2);
    }

    fn file_bytes() -> Vec<u8> {
        let mut w =
            IvfWriter::new_seekable(Cursor::new(Vec::new()), &IvfHeader::vp8(2, 2, 25)).unwrap();
        w.write_frame(0, &[0xaa; 50]).unwrap();
        w.write_frame(1, &[0xbb; 20]).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn truncated_files() {
        let bytes = file_bytes();
        // Inside the header.
        for cut in [0, 4, 31] {
            assert!(matches!(
                IvfReader::new(&bytes[..cut]),
                Err(IvfError::TruncatedHeader)
            ));
        }
        // Inside the first frame header, and inside the frame data.
        for cut in [33, 43, 44, 93] {
            let mut r = IvfReader::new(&bytes[..cut]).unwrap();
            match r.read_frame() {
                Err(IvfError::TruncatedFrame { index: 0 }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Inside the second frame's data.
        let mut r = IvfReader::new(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(r.read_frame().unwrap().map(|f| f.1.len()), Some(50));
        let err = r.read_frame().unwrap_err();
        assert!(matches!(err, IvfError::TruncatedFrame { index: 1 }));
        assert!(err.to_string().contains("frame 1"));
    }

    #[test]
    fn bad_magic_and_header_len() {
        let mut bytes = file_bytes();
        bytes[0] = b'X';
        let err = IvfReader::new(&bytes[..]).unwrap_err();
        assert!(matches!(err, IvfError::BadMagic(m) if &m == b"XKIF"));
        assert!(err.to_string().contains("DKIF"));

        let mut bytes = file_bytes();
        bytes[6] = 16;
        assert!(matches!(
            IvfReader::new(&bytes[..]),
            Err(IvfError::BadHeaderLen(16))
        ));
        bytes[6] = 0xff;
        bytes[7] = 0xff;
        assert!(matches!(
            IvfReader::new(&bytes[..]),
            Err(IvfError::BadHeaderLen(0xffff))
        ));
    }

    #[test]
    fn longer_header_is_skipped() {
        let good = file_bytes();
        let mut bytes = good[..32].to_vec();
        bytes[6] = 40;
        bytes.extend_from_slice(&[0u8; 8]);
        bytes.extend_from_slice(&good[32..]);
        let r = IvfReader::new(&bytes[..]).unwrap();
        assert_eq!(r.count(), 2);

        assert!(matches!(
            IvfReader::new(&bytes[..36]),
            Err(IvfError::TruncatedHeader)
        ));
    }

    #[test]
    fn absurd_frame_size() {
        let mut bytes = file_bytes();
        bytes[32..36].copy_from_slice(&(MAX_IVF_FRAME_LEN as u32 + 1).to_le_bytes());
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        let err = r.read_frame().unwrap_err();
        assert!(matches!(err, IvfError::FrameTooLarge { index: 0, .. }));
        assert!(err.to_string().contains("limit"));

        // A large but allowed size on a short file is a truncation, found without reading 16 MiB.
        bytes[32..36].copy_from_slice(&(MAX_IVF_FRAME_LEN as u32).to_le_bytes());
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            r.read_frame(),
            Err(IvfError::TruncatedFrame { index: 0 })
        ));
    }

    #[test]
    fn read_into_reuses_buffer() {
        let bytes = file_bytes();
        let mut r = IvfReader::new(&bytes[..]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(r.read_frame_into(&mut buf).unwrap(), Some(0));
        assert_eq!(buf, [0xaa; 50]);
        assert_eq!(r.read_frame_into(&mut buf).unwrap(), Some(1));
        assert_eq!(buf, [0xbb; 20]);
        assert_eq!(r.read_frame_into(&mut buf).unwrap(), None);
        assert_eq!(r.into_inner().len(), 0);
    }
}
