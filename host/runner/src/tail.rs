//! A byte buffer that keeps only the last `cap` bytes of a stream, and counts them all.

#[derive(Debug, Clone)]
pub struct Tail {
    buf: Vec<u8>,
    cap: usize,
    pub total: u64,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            buf: Vec::new(),
            cap,
            total: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if bytes.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
        } else {
            self.buf.extend_from_slice(bytes);
            if self.buf.len() > self.cap {
                let excess = self.buf.len() - self.cap;
                self.buf.drain(..excess);
            }
        }
    }

    /// The kept bytes as text; a character cut by the bound at the start is dropped.
    pub fn text(&self) -> String {
        let start = if self.total > self.buf.len() as u64 {
            self.buf
                .iter()
                .position(|b| (*b & 0xC0) != 0x80)
                .unwrap_or(self.buf.len())
        } else {
            0
        };
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_all() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.text(), "cdef");
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
        assert_eq!(t.total, 16);
        let mut u = Tail::new(2);
        u.push("aé".as_bytes()); // 3 bytes
        u.push(b"b");
        assert_eq!(u.text(), "b", "a cut multi-byte character is dropped");
    }
}
