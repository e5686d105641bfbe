//! RPC request parsing: procedure name or id, and parameters (MS-TDS 2.2.6.6).

use super::sql::Value;
use super::tokens::{utf16_lossy, Reader};

/// Which procedure an RPC names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proc {
    Id(u16),
    Name(String),
}

impl Proc {
    /// Whether this is `sp_executesql` (ProcID 10 or by name).
    pub fn is_executesql(&self) -> bool {
        match self {
            Proc::Id(id) => *id == 10,
            Proc::Name(n) => {
                let n = n.to_ascii_lowercase();
                let n = n.trim_start_matches("sys.").trim_start_matches("dbo.");
                n == "sp_executesql"
            }
        }
    }

    pub fn display(&self) -> String {
        match self {
            Proc::Id(id) => match id {
                1 => "sp_cursor".into(),
                2 => "sp_cursoropen".into(),
                10 => "sp_executesql".into(),
                11 => "sp_prepare".into(),
                12 => "sp_execute".into(),
                13 => "sp_prepexec".into(),
                15 => "sp_unprepare".into(),
                other => format!("procedure id {other}"),
            },
            Proc::Name(n) => n.clone(),
        }
    }
}

/// One RPC parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Param {
    pub name: String,
    pub value: Value,
}

/// A parsed RPC request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcRequest {
    pub proc: Proc,
    pub params: Vec<Param>,
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcError {
    /// The stream is malformed (the session is closed).
    Malformed,
    /// A parameter of a type the server does not handle (reported as error 8009).
    UnsupportedType { index: usize, name: String, ty: u8 },
}

/// Skips the ALL_HEADERS block (present in TDS 7.2+ for SQLBatch, RPC and TM requests).
pub(crate) fn skip_all_headers(payload: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(payload);
    let total = r.u32le()? as usize;
    // Sanity: ALL_HEADERS is at least its own length field and fits the payload.
    if total < 4 || total > payload.len() {
        return None;
    }
    payload.get(total..)
}

/// Parses an RPC request payload (ALL_HEADERS included). Only the first RPC of a
/// batched RPC request is used.
pub(crate) fn parse(payload: &[u8]) -> Result<RpcRequest, RpcError> {
    let body = skip_all_headers(payload).ok_or(RpcError::Malformed)?;
    let mut r = Reader::new(body);
    let name_len = r.u16le().ok_or(RpcError::Malformed)?;
    let proc = if name_len == 0xFFFF {
        Proc::Id(r.u16le().ok_or(RpcError::Malformed)?)
    } else {
        Proc::Name(r.utf16(name_len as usize).ok_or(RpcError::Malformed)?)
    };
    let _options = r.u16le().ok_or(RpcError::Malformed)?;
    let mut params = Vec::new();
    while r.remaining() > 0 {
        // Batch separator between RPCs: 0x80 (7.2+) or 0xFF.
        let peek = body.get(r.pos()).copied();
        if matches!(peek, Some(0x80) | Some(0xFF)) {
            break;
        }
        let name = r.b_varchar().ok_or(RpcError::Malformed)?;
        let _status = r.u8().ok_or(RpcError::Malformed)?;
        let index = params.len();
        let value = read_value(&mut r).map_err(|e| match e {
            ValueError::Malformed => RpcError::Malformed,
            ValueError::Unsupported(ty) => RpcError::UnsupportedType {
                index: index + 1,
                name: name.clone(),
                ty,
            },
        })?;
        params.push(Param { name, value });
    }
    Ok(RpcRequest { proc, params })
}

enum ValueError {
    Malformed,
    Unsupported(u8),
}

fn m<T>(o: Option<T>) -> Result<T, ValueError> {
    o.ok_or(ValueError::Malformed)
}

fn le_int(b: &[u8]) -> i64 {
    match b.len() {
        1 => b[0] as i64,
        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_le_bytes(a)
        }
        _ => 0,
    }
}

fn le_float(b: &[u8]) -> Option<f64> {
    match b.len() {
        4 => Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Some(f64::from_le_bytes(a))
        }
        _ => None,
    }
}

fn money(b: &[u8]) -> Option<f64> {
    let raw = match b.len() {
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        8 => {
            let hi = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
            let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64;
            (hi << 32) | lo
        }
        _ => return None,
    };
    Some(raw as f64 / 10_000.0)
}

/// Reads a length-prefixed (u16, 0xFFFF = NULL) or PLP value.
fn var_bytes(r: &mut Reader<'_>, max_len: u16) -> Result<Option<Vec<u8>>, ValueError> {
    if max_len != 0xFFFF {
        let len = m(r.u16le())?;
        if len == 0xFFFF {
            return Ok(None);
        }
        return Ok(Some(m(r.bytes(len as usize))?.to_vec()));
    }
    let total = m(r.u64le())?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = m(r.u32le())? as usize;
        if chunk == 0 {
            break;
        }
        out.extend_from_slice(m(r.bytes(chunk))?);
    }
    Ok(Some(out))
}

fn read_value(r: &mut Reader<'_>) -> Result<Value, ValueError> {
    let ty = m(r.u8())?;
    let v = match ty {
        0x1F => Value::Null,
        // Fixed-length types.
        0x30 => Value::Int(m(r.u8())? as i64),
        0x32 => Value::Int((m(r.u8())? != 0) as i64),
        0x34 => Value::Int(le_int(m(r.bytes(2))?)),
        0x38 => Value::Int(le_int(m(r.bytes(4))?)),
        0x7F => Value::Int(le_int(m(r.bytes(8))?)),
        0x3B => Value::Float(m(le_float(m(r.bytes(4))?))?),
        0x3E => Value::Float(m(le_float(m(r.bytes(8))?))?),
        0x3C => Value::Float(m(money(m(r.bytes(8))?))?),
        0x7A => Value::Float(m(money(m(r.bytes(4))?))?),
        // INTN, BITN, FLTN, MONEYN, GUID: max length byte, then length-prefixed value.
        0x26 | 0x68 | 0x6D | 0x6E | 0x24 => {
            let _max = m(r.u8())?;
            let len = m(r.u8())? as usize;
            if len == 0 {
                Value::Null
            } else {
                let b = m(r.bytes(len))?;
                match ty {
                    0x26 => Value::Int(le_int(b)),
                    0x68 => Value::Int((b[0] != 0) as i64),
                    0x6D => Value::Float(m(le_float(b))?),
                    0x6E => Value::Float(m(money(b))?),
                    _ => Value::Text(guid_text(b)),
                }
            }
        }
        // DECIMALN / NUMERICN.
        0x6A | 0x6C => {
            let _max = m(r.u8())?;
            let _precision = m(r.u8())?;
            let scale = m(r.u8())?;
            let len = m(r.u8())? as usize;
            if len == 0 {
                Value::Null
            } else {
                let b = m(r.bytes(len))?;
                let positive = b[0] == 1;
                let mut mag: u128 = 0;
                for (i, byte) in b[1..].iter().enumerate().take(16) {
                    mag |= (*byte as u128) << (8 * i);
                }
                if scale == 0 && mag <= i64::MAX as u128 {
                    let v = mag as i64;
                    Value::Int(if positive { v } else { -v })
                } else {
                    let v = mag as f64 / 10f64.powi(scale as i32);
                    Value::Float(if positive { v } else { -v })
                }
            }
        }
        // NVARCHAR / NCHAR: max length, collation, value (PLP when max is 0xFFFF).
        0xE7 | 0xEF => {
            let max = m(r.u16le())?;
            m(r.skip(5))?;
            match var_bytes(r, max)? {
                None => Value::Null,
                Some(b) => Value::Text(utf16_lossy(&b)),
            }
        }
        // VARCHAR / CHAR: single-byte text, decoded as Latin-1.
        0xA7 | 0xAF => {
            let max = m(r.u16le())?;
            m(r.skip(5))?;
            match var_bytes(r, max)? {
                None => Value::Null,
                Some(b) => Value::Text(b.iter().map(|&c| c as char).collect()),
            }
        }
        // VARBINARY / BINARY.
        0xA5 | 0xAD => {
            let max = m(r.u16le())?;
            match var_bytes(r, max)? {
                None => Value::Null,
                Some(b) => Value::Blob(b),
            }
        }
        other => return Err(ValueError::Unsupported(other)),
    };
    Ok(v)
}

fn guid_text(b: &[u8]) -> String {
    if b.len() != 16 {
        return String::new();
    }
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// Parameter names declared in an `sp_executesql` @params string, in order
/// (used when a client sends parameters without names).
pub(crate) fn declared_names(decl: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    for part in decl.split(|c: char| {
        if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth -= 1;
        }
        c == ',' && depth == 0
    }) {
        if let Some(name) = part.split_whitespace().next() {
            if name.starts_with('@') {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_headers() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&22u32.to_le_bytes());
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&[0u8; 8]);
        v.extend_from_slice(&1u32.to_le_bytes());
        v
    }

    #[test]
    fn parses_executesql_by_id_with_params() {
        let mut p = all_headers();
        p.extend_from_slice(&0xFFFFu16.to_le_bytes());
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        // @P1 INTN(4) = 7
        p.push(3);
        for u in "@P1".encode_utf16() {
            p.extend_from_slice(&u.to_le_bytes());
        }
        p.push(0);
        p.extend_from_slice(&[0x26, 4, 4, 7, 0, 0, 0]);
        // unnamed NULL
        p.push(0);
        p.push(0);
        p.push(0x1F);
        let req = parse(&p).unwrap();
        assert!(req.proc.is_executesql());
        assert_eq!(req.params.len(), 2);
        assert_eq!(req.params[0].value, Value::Int(7));
        assert_eq!(req.params[1].value, Value::Null);
    }

    #[test]
    fn truncated_is_malformed() {
        let mut p = all_headers();
        p.extend_from_slice(&0xFFFFu16.to_le_bytes());
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&[3, b'@', 0]);
        assert_eq!(parse(&p), Err(RpcError::Malformed));
        assert_eq!(parse(&[1, 2]), Err(RpcError::Malformed));
    }

    #[test]
    fn declared_names_in_order() {
        assert_eq!(
            declared_names("@P1 int,@P2 nvarchar(4000), @P3 decimal(10,2)"),
            vec!["@P1", "@P2", "@P3"]
        );
    }
}
