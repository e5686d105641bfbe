//! Token-stream encoding (server → client) and a bounds-checked reader for client
//! payloads (client → server).

use super::errors::ErrorSpec;
use super::sql::{ColType, Column, Value};

/// Token type bytes (MS-TDS 2.2.7).
pub(crate) mod tok {
    pub const RETURNSTATUS: u8 = 0x79;
    pub const COLMETADATA: u8 = 0x81;
    pub const ERROR: u8 = 0xAA;
    pub const INFO: u8 = 0xAB;
    pub const LOGINACK: u8 = 0xAD;
    pub const ROW: u8 = 0xD1;
    pub const ENVCHANGE: u8 = 0xE3;
    pub const DONE: u8 = 0xFD;
    pub const DONEPROC: u8 = 0xFE;
    pub const DONEINPROC: u8 = 0xFF;
}

/// DONE status bits.
pub(crate) mod done {
    pub const FINAL: u16 = 0x00;
    pub const MORE: u16 = 0x01;
    pub const ERROR: u16 = 0x02;
    pub const COUNT: u16 = 0x10;
    pub const ATTN: u16 = 0x20;
}

/// Collation sent for NVARCHAR columns and the login ENVCHANGE:
/// SQL_Latin1_General_CP1_CI_AS (LCID 0x0409, flags 0xD0, sort id 52).
pub(crate) const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// Appends UTF-16LE code units of `s`, returning how many units were written.
fn put_utf16(buf: &mut Vec<u8>, s: &str) -> usize {
    let mut n = 0;
    for u in s.encode_utf16() {
        buf.extend_from_slice(&u.to_le_bytes());
        n += 1;
    }
    n
}

/// B_VARCHAR: one length byte (in characters) then UTF-16LE; truncated at 255 units.
pub(crate) fn b_varchar(buf: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    buf.push(units.len() as u8);
    for u in units {
        buf.extend_from_slice(&u.to_le_bytes());
    }
}

/// US_VARCHAR: two length bytes (in characters) then UTF-16LE; truncated at 65535 units.
pub(crate) fn us_varchar(buf: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(65535).collect();
    buf.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        buf.extend_from_slice(&u.to_le_bytes());
    }
}

/// Builds a token stream.
#[derive(Debug, Default)]
pub(crate) struct TokenWriter {
    pub buf: Vec<u8>,
}

impl TokenWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// A token with a u16 length prefix whose body is built by `f`.
    fn with_len16(&mut self, token: u8, f: impl FnOnce(&mut Vec<u8>)) {
        let mut body = Vec::new();
        f(&mut body);
        self.buf.push(token);
        self.buf
            .extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_le_bytes());
        self.buf.extend_from_slice(&body);
    }

    /// ENVCHANGE with B_VARCHAR new and old values (database, language, packet size).
    pub fn env_change_str(&mut self, ty: u8, new: &str, old: &str) {
        self.with_len16(tok::ENVCHANGE, |b| {
            b.push(ty);
            b_varchar(b, new);
            b_varchar(b, old);
        });
    }

    /// ENVCHANGE with B_VARBYTE new and old values (collation, transactions).
    pub fn env_change_bytes(&mut self, ty: u8, new: &[u8], old: &[u8]) {
        self.with_len16(tok::ENVCHANGE, |b| {
            b.push(ty);
            b.push(new.len() as u8);
            b.extend_from_slice(new);
            b.push(old.len() as u8);
            b.extend_from_slice(old);
        });
    }

    /// ENVCHANGE type 20 (routing) to `host:port`.
    pub fn env_change_routing(&mut self, host: &str, port: u16) {
        self.with_len16(tok::ENVCHANGE, |b| {
            b.push(20);
            let mut value = vec![0u8]; // protocol: TCP
            value.extend_from_slice(&port.to_le_bytes());
            us_varchar(&mut value, host);
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
            b.extend_from_slice(&value);
            b.extend_from_slice(&0u16.to_le_bytes()); // old value: empty
        });
    }

    fn message(&mut self, token: u8, number: u32, state: u8, class: u8, msg: &str, server: &str) {
        // SQL Server messages are at most 2047 characters; this also keeps the token
        // length within its u16 field.
        let msg: String = msg.chars().take(2047).collect();
        let msg = msg.as_str();
        self.with_len16(token, |b| {
            b.extend_from_slice(&number.to_le_bytes());
            b.push(state);
            b.push(class);
            us_varchar(b, msg);
            b_varchar(b, server);
            b_varchar(b, ""); // procedure
            b.extend_from_slice(&1u32.to_le_bytes()); // line
        });
    }

    /// ERROR token with an already-rendered message.
    pub fn error(&mut self, e: &ErrorSpec, message: &str, server: &str) {
        self.message(tok::ERROR, e.number, e.state, e.class, message, server);
    }

    /// INFO token.
    pub fn info(&mut self, number: u32, msg: &str, server: &str) {
        self.message(tok::INFO, number, 1, 0, msg, server);
    }

    /// LOGINACK: interface SQL (1), TDS version (big-endian), program name, version.
    pub fn login_ack(&mut self, tds_version: u32) {
        self.with_len16(tok::LOGINACK, |b| {
            b.push(1);
            b.extend_from_slice(&tds_version.to_be_bytes());
            b_varchar(b, "Microsoft SQL Server");
            b.extend_from_slice(&[16, 0, 0x10, 0x27]); // 16.0.4135
        });
    }

    /// DONE, DONEPROC or DONEINPROC.
    pub fn done(&mut self, token: u8, status: u16, cur_cmd: u16, rows: u64) {
        self.buf.push(token);
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&cur_cmd.to_le_bytes());
        self.buf.extend_from_slice(&rows.to_le_bytes());
    }

    /// RETURNSTATUS.
    pub fn return_status(&mut self, v: i32) {
        self.buf.push(tok::RETURNSTATUS);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// COLMETADATA for a result set.
    pub fn col_metadata(&mut self, cols: &[Column]) {
        self.buf.push(tok::COLMETADATA);
        self.buf
            .extend_from_slice(&(cols.len().min(4096) as u16).to_le_bytes());
        for c in cols.iter().take(4096) {
            self.buf.extend_from_slice(&0u32.to_le_bytes()); // user type
            self.buf.extend_from_slice(&0x0009u16.to_le_bytes()); // nullable | updateable unknown
            match c.ty {
                ColType::Int(n) => self.buf.extend_from_slice(&[0x26, n]),
                ColType::Float(n) => self.buf.extend_from_slice(&[0x6D, n]),
                ColType::Bit => self.buf.extend_from_slice(&[0x68, 1]),
                ColType::NVarChar(chars) => {
                    self.buf.push(0xE7);
                    self.buf.extend_from_slice(&(chars * 2).to_le_bytes());
                    self.buf.extend_from_slice(&COLLATION);
                }
                ColType::NVarCharMax => {
                    self.buf.push(0xE7);
                    self.buf.extend_from_slice(&0xFFFFu16.to_le_bytes());
                    self.buf.extend_from_slice(&COLLATION);
                }
                ColType::VarBinary(n) => {
                    self.buf.push(0xA5);
                    self.buf.extend_from_slice(&n.to_le_bytes());
                }
                ColType::VarBinaryMax => {
                    self.buf.push(0xA5);
                    self.buf.extend_from_slice(&0xFFFFu16.to_le_bytes());
                }
            }
            b_varchar(&mut self.buf, &c.name);
        }
    }

    /// ROW; values must already be converted to the column types.
    pub fn row(&mut self, cols: &[Column], values: &[Value]) {
        self.buf.push(tok::ROW);
        for (c, v) in cols.iter().zip(values) {
            match (c.ty, v) {
                (ColType::Int(_), Value::Null)
                | (ColType::Float(_), Value::Null)
                | (ColType::Bit, Value::Null) => self.buf.push(0),
                (ColType::Int(n), Value::Int(i)) => {
                    self.buf.push(n);
                    let bytes = i.to_le_bytes();
                    self.buf.extend_from_slice(&bytes[..n as usize]);
                }
                (ColType::Float(4), Value::Float(f)) => {
                    self.buf.push(4);
                    self.buf.extend_from_slice(&(*f as f32).to_le_bytes());
                }
                (ColType::Float(_), Value::Float(f)) => {
                    self.buf.push(8);
                    self.buf.extend_from_slice(&f.to_le_bytes());
                }
                (ColType::Bit, Value::Int(i)) => self.buf.extend_from_slice(&[1, (*i != 0) as u8]),
                (ColType::NVarChar(_), Value::Text(s)) => {
                    let start = self.buf.len();
                    self.buf.extend_from_slice(&[0, 0]);
                    let n = put_utf16(&mut self.buf, s);
                    let bytes = ((n * 2) as u16).to_le_bytes();
                    self.buf[start..start + 2].copy_from_slice(&bytes);
                }
                (ColType::VarBinary(_), Value::Blob(b)) => {
                    self.buf.extend_from_slice(&(b.len() as u16).to_le_bytes());
                    self.buf.extend_from_slice(b);
                }
                (ColType::NVarChar(_), _) | (ColType::VarBinary(_), _) => {
                    self.buf.extend_from_slice(&0xFFFFu16.to_le_bytes())
                }
                (ColType::NVarCharMax, Value::Text(s)) => {
                    let mut data = Vec::with_capacity(s.len() * 2);
                    put_utf16(&mut data, s);
                    self.plp(&data);
                }
                (ColType::VarBinaryMax, Value::Blob(b)) => self.plp(b),
                (ColType::NVarCharMax, _) | (ColType::VarBinaryMax, _) => {
                    self.buf.extend_from_slice(&u64::MAX.to_le_bytes())
                }
                // Values are converted before encoding; anything else is sent as NULL.
                (ColType::Int(_), _) | (ColType::Float(_), _) | (ColType::Bit, _) => {
                    self.buf.push(0)
                }
            }
        }
    }

    /// A PLP value: total length, chunks of at most 8000 bytes, terminator.
    fn plp(&mut self, data: &[u8]) {
        self.buf
            .extend_from_slice(&(data.len() as u64).to_le_bytes());
        for chunk in data.chunks(8000) {
            self.buf
                .extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(chunk);
        }
        self.buf.extend_from_slice(&0u32.to_le_bytes());
    }
}

/// A bounds-checked reader over a client payload; every read returns `None` when the
/// data is short, so malformed input can never panic.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u16le(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32le(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64le(&mut self) -> Option<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    /// `n` UTF-16LE code units as a string (lossy).
    pub fn utf16(&mut self, units: usize) -> Option<String> {
        let b = self.bytes(units.checked_mul(2)?)?;
        Some(utf16_lossy(b))
    }

    pub fn b_varchar(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        self.utf16(n)
    }
}

/// Decodes UTF-16LE bytes, replacing invalid sequences.
pub(crate) fn utf16_lossy(b: &[u8]) -> String {
    let units = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}
