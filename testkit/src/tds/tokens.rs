//! Token-stream encoding (server → client) and a bounds-checked reader for client
//! payloads (client → server).

use super::convert;
use super::datetime as dt;
use super::errors::ErrorSpec;
use super::sql::{Column, Value};
use super::types::{cp1252_encode, decimal_len, time_len, Len, SqlType};

pub(crate) use super::types::COLLATION;

/// Token type bytes (MS-TDS 2.2.7).
pub(crate) mod tok {
    pub const RETURNSTATUS: u8 = 0x79;
    pub const RETURNVALUE: u8 = 0xAC;
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

/// Appends a TIME(scale) value (already rounded) in `len` bytes.
fn put_time(b: &mut Vec<u8>, ticks: u64, scale: u8, len: usize) {
    let units = ticks / 10u64.pow(7 - scale.min(7) as u32);
    b.extend_from_slice(&units.to_le_bytes()[..len]);
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

    /// RETURNVALUE: an output parameter of the RPC.
    pub fn return_value(&mut self, ordinal: u16, name: &str, ty: SqlType, v: &Value) {
        self.buf.push(tok::RETURNVALUE);
        self.buf.extend_from_slice(&ordinal.to_le_bytes());
        b_varchar(&mut self.buf, name);
        self.buf.push(0x01); // output parameter
        self.buf.extend_from_slice(&0u32.to_le_bytes()); // user type
        self.buf.extend_from_slice(&0x0001u16.to_le_bytes()); // nullable
        ty.type_info(&mut self.buf);
        self.cell(ty, v);
    }

    /// COLMETADATA for a result set.
    pub fn col_metadata(&mut self, cols: &[Column]) {
        self.buf.push(tok::COLMETADATA);
        self.buf
            .extend_from_slice(&(cols.len().min(4096) as u16).to_le_bytes());
        for c in cols.iter().take(4096) {
            self.buf.extend_from_slice(&0u32.to_le_bytes()); // user type
            self.buf.extend_from_slice(&0x0009u16.to_le_bytes()); // nullable | updateable unknown
            c.ty.type_info(&mut self.buf);
            b_varchar(&mut self.buf, &c.name);
        }
    }

    /// ROW; values must already be converted to the column types.
    pub fn row(&mut self, cols: &[Column], values: &[Value]) {
        self.buf.push(tok::ROW);
        for (c, v) in cols.iter().zip(values) {
            self.cell(c.ty, v);
        }
    }

    /// One value in the encoding of its column's type; a value of another shape (which
    /// conversion never produces) is sent as NULL.
    fn cell(&mut self, ty: SqlType, v: &Value) {
        let b = &mut self.buf;
        match (ty, v) {
            (SqlType::TinyInt, Value::Int(i)) => b.extend_from_slice(&[1, *i as u8]),
            (SqlType::SmallInt, Value::Int(i)) => {
                b.push(2);
                b.extend_from_slice(&(*i as i16).to_le_bytes());
            }
            (SqlType::Int, Value::Int(i)) => {
                b.push(4);
                b.extend_from_slice(&(*i as i32).to_le_bytes());
            }
            (SqlType::BigInt, Value::Int(i)) => {
                b.push(8);
                b.extend_from_slice(&i.to_le_bytes());
            }
            (SqlType::Real, Value::Float(f)) => {
                b.push(4);
                b.extend_from_slice(&(*f as f32).to_le_bytes());
            }
            (SqlType::Float, Value::Float(f)) => {
                b.push(8);
                b.extend_from_slice(&f.to_le_bytes());
            }
            (SqlType::Bit, Value::Int(i)) => b.extend_from_slice(&[1, (*i != 0) as u8]),
            (SqlType::Decimal(p, s), Value::Dec(d)) => {
                let d = d.rescale(s).unwrap_or(*d);
                let len = decimal_len(p);
                b.push(len);
                b.push(if d.neg { 0 } else { 1 });
                b.extend_from_slice(&d.mag.to_le_bytes()[..len as usize - 1]);
            }
            (SqlType::Money, Value::Dec(d)) => {
                let x = d.scaled_i64(4).unwrap_or(0);
                b.push(8);
                b.extend_from_slice(&((x >> 32) as i32).to_le_bytes());
                b.extend_from_slice(&(x as u32).to_le_bytes());
            }
            (SqlType::SmallMoney, Value::Dec(d)) => {
                b.push(4);
                b.extend_from_slice(&(d.scaled_i64(4).unwrap_or(0) as i32).to_le_bytes());
            }
            (SqlType::NVarChar(Len::N(_)) | SqlType::NChar(_), Value::Text(s)) => {
                let start = b.len();
                b.extend_from_slice(&[0, 0]);
                let n = put_utf16(b, s);
                let bytes = ((n * 2).min(0xFFFE) as u16).to_le_bytes();
                b[start..start + 2].copy_from_slice(&bytes);
            }
            (SqlType::NVarChar(Len::Max) | SqlType::Xml, Value::Text(s)) => {
                let mut data = Vec::with_capacity(s.len() * 2);
                put_utf16(&mut data, s);
                self.plp(&data);
            }
            (SqlType::VarChar(Len::N(_)) | SqlType::Char(_), Value::Text(s)) => {
                let data = cp1252_encode(s);
                b.extend_from_slice(&(data.len().min(0xFFFE) as u16).to_le_bytes());
                b.extend_from_slice(&data);
            }
            (SqlType::VarChar(Len::Max), Value::Text(s)) => {
                let data = cp1252_encode(s);
                self.plp(&data);
            }
            (SqlType::VarBinary(Len::N(_)) | SqlType::Binary(_), Value::Blob(x)) => {
                b.extend_from_slice(&(x.len().min(0xFFFE) as u16).to_le_bytes());
                b.extend_from_slice(x);
            }
            (SqlType::VarBinary(Len::Max), Value::Blob(x)) => self.plp(x),
            (SqlType::UniqueIdentifier, Value::Guid(g)) => {
                b.push(16);
                b.extend_from_slice(&convert::guid_wire(g));
            }
            (SqlType::Date, Value::Date(d)) => {
                b.push(3);
                b.extend_from_slice(&d.to_le_bytes()[..3]);
            }
            (SqlType::Time(s), Value::Time(t)) => {
                let (_, t) = dt::round(0, *t, s);
                let tl = time_len(s);
                b.push(tl as u8);
                put_time(b, t, s, tl);
            }
            (SqlType::DateTime2(s), Value::DateTime(d, t)) => {
                let (d, t) = dt::round(*d, *t, s);
                let tl = time_len(s);
                b.push(tl as u8 + 3);
                put_time(b, t, s, tl);
                b.extend_from_slice(&d.to_le_bytes()[..3]);
            }
            (SqlType::DateTimeOffset(s), Value::DateTimeOffset(d, t, o)) => {
                let (d, t) = dt::round(*d, *t, s);
                // Sent as UTC plus the offset; conversion keeps the UTC date in range
                // (`datetime::offset_in_range`).
                let (utc_day, utc_ticks) = dt::shift_minutes(d, t, -i64::from(*o));
                let tl = time_len(s);
                b.push(tl as u8 + 5);
                put_time(b, utc_ticks, s, tl);
                b.extend_from_slice(&(utc_day as i32).to_le_bytes()[..3]);
                b.extend_from_slice(&o.to_le_bytes());
            }
            (SqlType::DateTime, Value::DateTime(d, t)) => {
                let (d, t300) = dt::to_datetime_ticks(*d, *t);
                b.push(8);
                b.extend_from_slice(&(d - dt::DAY_1900).to_le_bytes());
                b.extend_from_slice(&t300.to_le_bytes());
            }
            (SqlType::SmallDateTime, Value::DateTime(d, t)) => {
                let (d, min) = dt::to_minutes(*d, *t);
                b.push(4);
                b.extend_from_slice(&((d - dt::DAY_1900) as u16).to_le_bytes());
                b.extend_from_slice(&min.to_le_bytes());
            }
            // NULL (and any unconverted value).
            (
                SqlType::NVarChar(Len::N(_))
                | SqlType::NChar(_)
                | SqlType::VarChar(Len::N(_))
                | SqlType::Char(_)
                | SqlType::VarBinary(Len::N(_))
                | SqlType::Binary(_),
                _,
            ) => b.extend_from_slice(&0xFFFFu16.to_le_bytes()),
            (
                SqlType::NVarChar(Len::Max)
                | SqlType::VarChar(Len::Max)
                | SqlType::VarBinary(Len::Max)
                | SqlType::Xml,
                _,
            ) => b.extend_from_slice(&u64::MAX.to_le_bytes()),
            _ => b.push(0),
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
