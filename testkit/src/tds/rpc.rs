//! RPC request parsing: procedure name or id, and parameters (MS-TDS 2.2.6.6).

use super::convert;
use super::datetime as dt;
use super::dec::Dec;
use super::sql::Value;
use super::tokens::{utf16_lossy, Reader};
use super::types::{cp1252_decode, time_len, Len, SqlType};

/// Which procedure an RPC names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proc {
    Id(u16),
    Name(String),
}

impl Proc {
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
    /// The type the client declared for it.
    pub ty: SqlType,
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
    /// A parameter value outside its type's range (reported as error 8023).
    InvalidValue {
        index: usize,
        name: String,
        ty: String,
    },
    /// A parameter whose declared maximum length its type does not allow (reported as
    /// error 8016): over 8000 bytes, or 0xFFFF (MAX, sent as PLP) for a fixed-length
    /// CHAR, NCHAR or BINARY.
    InvalidLength { index: usize, name: String, ty: u8 },
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
        let (value, ty) = read_value(&mut r).map_err(|e| match e {
            ValueError::Malformed => RpcError::Malformed,
            ValueError::Unsupported(ty) => RpcError::UnsupportedType {
                index: index + 1,
                name: name.clone(),
                ty,
            },
            ValueError::BadLength(ty) => RpcError::InvalidLength {
                index: index + 1,
                name: name.clone(),
                ty,
            },
            ValueError::Invalid(ty) => RpcError::InvalidValue {
                index: index + 1,
                name: name.clone(),
                ty: ty.name().to_string(),
            },
        })?;
        params.push(Param { name, value, ty });
    }
    Ok(RpcRequest { proc, params })
}

enum ValueError {
    Malformed,
    Unsupported(u8),
    BadLength(u8),
    Invalid(SqlType),
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

/// Little-endian unsigned integer of up to 8 bytes.
fn le_uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
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

/// MONEY (8 bytes: high then low 32 bits) or SMALLMONEY (4 bytes), scaled by 10^4.
fn money(b: &[u8]) -> Option<Dec> {
    let raw = match b.len() {
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        8 => {
            let hi = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
            let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64;
            (hi << 32) | lo
        }
        _ => return None,
    };
    Some(Dec::from_scaled(raw as i128, 4))
}

/// DATETIME (8 bytes: days since 1900-01-01, 1/300 s since midnight) or SMALLDATETIME
/// (4 bytes: days, minutes). A day before 1753-01-01 or past 9999-12-31, or a time of
/// day of 24 hours or more, is not a value of the type.
fn datetime(b: &[u8]) -> Result<Value, ValueError> {
    match b.len() {
        8 => {
            let days = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let t300 = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let day = dt::DAY_1900
                .checked_add(days)
                .filter(|d| (dt::DAY_1753..=dt::MAX_DAY).contains(d));
            match day {
                Some(day) if t300 < 300 * 86_400 => {
                    Ok(Value::DateTime(day, dt::from_datetime_ticks(t300)))
                }
                _ => Err(ValueError::Invalid(SqlType::DateTime)),
            }
        }
        4 => {
            // Any u16 day is within 1900-01-01 … 2079-06-06.
            let days = u16::from_le_bytes([b[0], b[1]]) as i32;
            let mins = u16::from_le_bytes([b[2], b[3]]) as u64;
            if mins >= 24 * 60 {
                return Err(ValueError::Invalid(SqlType::SmallDateTime));
            }
            Ok(Value::DateTime(dt::DAY_1900 + days, mins * 60 * 10_000_000))
        }
        _ => Err(ValueError::Malformed),
    }
}

/// A TIME(scale) value's bytes as 100 ns ticks.
fn time_ticks(b: &[u8], scale: u8) -> Option<u64> {
    let units = le_uint(b);
    let ticks = units.checked_mul(10u64.pow(7 - scale.min(7) as u32))?;
    (ticks < dt::TICKS_PER_DAY).then_some(ticks)
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
    plp(r)
}

/// A PLP value: total length (all ones = NULL), chunks, zero terminator.
fn plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, ValueError> {
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

/// A TEXT/NTEXT/IMAGE value: a 4-byte length (all ones = NULL), then the bytes.
fn long_bytes(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, ValueError> {
    let len = m(r.u32le())?;
    if len == u32::MAX {
        return Ok(None);
    }
    Ok(Some(m(r.bytes(len as usize))?.to_vec()))
}

/// Checks the declared maximum length of a character or binary type `ty`: at most 8000
/// bytes, or 0xFFFF (MAX) for the variable-length ones (NVARCHAR, VARCHAR, VARBINARY).
fn check_max_len(ty: u8, max: u16) -> Result<u16, ValueError> {
    let variable = matches!(ty, 0xE7 | 0xA7 | 0xA5);
    if max <= 8000 || (variable && max == 0xFFFF) {
        Ok(max)
    } else {
        Err(ValueError::BadLength(ty))
    }
}

fn text_len(max_bytes: u16, unit: u16) -> Len {
    if max_bytes == 0xFFFF {
        Len::Max
    } else {
        Len::N((max_bytes / unit).max(1))
    }
}

/// Reads one parameter's TYPE_INFO and value: the value and its declared type.
fn read_value(r: &mut Reader<'_>) -> Result<(Value, SqlType), ValueError> {
    let ty = m(r.u8())?;
    let v = match ty {
        0x1F => (Value::Null, SqlType::Int),
        // Fixed-length types.
        0x30 => (Value::Int(m(r.u8())? as i64), SqlType::TinyInt),
        0x32 => (Value::Int((m(r.u8())? != 0) as i64), SqlType::Bit),
        0x34 => (Value::Int(le_int(m(r.bytes(2))?)), SqlType::SmallInt),
        0x38 => (Value::Int(le_int(m(r.bytes(4))?)), SqlType::Int),
        0x7F => (Value::Int(le_int(m(r.bytes(8))?)), SqlType::BigInt),
        0x3B => (Value::Float(m(le_float(m(r.bytes(4))?))?), SqlType::Real),
        0x3E => (Value::Float(m(le_float(m(r.bytes(8))?))?), SqlType::Float),
        0x3C => (Value::Dec(m(money(m(r.bytes(8))?))?), SqlType::Money),
        0x7A => (Value::Dec(m(money(m(r.bytes(4))?))?), SqlType::SmallMoney),
        0x3D => (datetime(m(r.bytes(8))?)?, SqlType::DateTime),
        0x3A => (datetime(m(r.bytes(4))?)?, SqlType::SmallDateTime),
        // INTN, BITN, FLTN, MONEYN, GUID, DATETIMN: max length, then a length byte.
        0x26 | 0x68 | 0x6D | 0x6E | 0x24 | 0x6F => {
            let max = m(r.u8())?;
            let sql_ty = match (ty, max) {
                (0x26, 1) => SqlType::TinyInt,
                (0x26, 2) => SqlType::SmallInt,
                (0x26, 4) => SqlType::Int,
                (0x26, 8) => SqlType::BigInt,
                (0x68, 1) => SqlType::Bit,
                (0x6D, 4) => SqlType::Real,
                (0x6D, 8) => SqlType::Float,
                (0x6E, 4) => SqlType::SmallMoney,
                (0x6E, 8) => SqlType::Money,
                (0x24, 16) => SqlType::UniqueIdentifier,
                (0x6F, 4) => SqlType::SmallDateTime,
                (0x6F, 8) => SqlType::DateTime,
                _ => return Err(ValueError::Malformed),
            };
            let len = m(r.u8())? as usize;
            if len == 0 {
                (Value::Null, sql_ty)
            } else {
                if len != max as usize {
                    return Err(ValueError::Malformed);
                }
                let b = m(r.bytes(len))?;
                let v = match ty {
                    0x26 if len == 1 => Value::Int(b[0] as i64),
                    0x26 => Value::Int(le_int(b)),
                    0x68 => Value::Int((b[0] != 0) as i64),
                    0x6D => Value::Float(m(le_float(b))?),
                    0x6E => Value::Dec(m(money(b))?),
                    0x6F => datetime(b)?,
                    _ => {
                        let mut w = [0u8; 16];
                        w.copy_from_slice(b);
                        Value::Guid(convert::guid_wire(&w))
                    }
                };
                (v, sql_ty)
            }
        }
        // DECIMALN / NUMERICN.
        0x6A | 0x6C => {
            let _max = m(r.u8())?;
            let precision = m(r.u8())?;
            let scale = m(r.u8())?;
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(ValueError::Malformed);
            }
            let sql_ty = SqlType::Decimal(precision, scale);
            let len = m(r.u8())? as usize;
            if len == 0 {
                (Value::Null, sql_ty)
            } else {
                let b = m(r.bytes(len))?;
                if len > 17 {
                    return Err(ValueError::Malformed);
                }
                let positive = b[0] == 1;
                let mag = b[1..]
                    .iter()
                    .rev()
                    .fold(0u128, |acc, &x| (acc << 8) | x as u128);
                let d = Dec {
                    neg: !positive && mag != 0,
                    mag,
                    scale,
                };
                // More digits than the declared precision: not a value of the type.
                let d = d.fit(precision, scale).ok_or(ValueError::Invalid(sql_ty))?;
                (Value::Dec(d), sql_ty)
            }
        }
        // DATEN: length 0 or 3.
        0x28 => {
            let len = m(r.u8())? as usize;
            if len == 0 {
                (Value::Null, SqlType::Date)
            } else if len == 3 {
                let days = le_uint(m(r.bytes(3))?) as i32;
                (Value::Date(days), SqlType::Date)
            } else {
                return Err(ValueError::Malformed);
            }
        }
        // TIMEN, DATETIME2N, DATETIMEOFFSETN: scale, length, time [, date [, offset]].
        0x29..=0x2B => {
            let scale = m(r.u8())?;
            if scale > 7 {
                return Err(ValueError::Malformed);
            }
            let tl = time_len(scale);
            let len = m(r.u8())? as usize;
            let sql_ty = match ty {
                0x29 => SqlType::Time(scale),
                0x2A => SqlType::DateTime2(scale),
                _ => SqlType::DateTimeOffset(scale),
            };
            if len == 0 {
                (Value::Null, sql_ty)
            } else {
                let want = tl
                    + match ty {
                        0x29 => 0,
                        0x2A => 3,
                        _ => 5,
                    };
                if len != want {
                    return Err(ValueError::Malformed);
                }
                let b = m(r.bytes(len))?;
                let ticks = time_ticks(&b[..tl], scale).ok_or(ValueError::Invalid(sql_ty))?;
                let v = match ty {
                    0x29 => Value::Time(ticks),
                    0x2A => Value::DateTime(le_uint(&b[tl..tl + 3]) as i32, ticks),
                    _ => {
                        // Sent in UTC; kept as local time plus offset.
                        let days = le_uint(&b[tl..tl + 3]) as i32;
                        let offset = i16::from_le_bytes([b[tl + 3], b[tl + 4]]);
                        let (local_day, local_ticks) =
                            dt::shift_minutes(days, ticks, i64::from(offset));
                        // (Any day read from 3 bytes fits i32; -1 is out of range anyway.)
                        let local_day = i32::try_from(local_day).unwrap_or(-1);
                        if !dt::offset_in_range(local_day, local_ticks, offset) {
                            return Err(ValueError::Invalid(sql_ty));
                        }
                        Value::DateTimeOffset(local_day, local_ticks, offset)
                    }
                };
                (v, sql_ty)
            }
        }
        // NVARCHAR / NCHAR: max length, collation, value (PLP when max is 0xFFFF).
        0xE7 | 0xEF => {
            let max = check_max_len(ty, m(r.u16le())?)?;
            m(r.skip(5))?;
            let sql_ty = if ty == 0xEF {
                SqlType::NChar((max / 2).max(1))
            } else {
                SqlType::NVarChar(text_len(max, 2))
            };
            match var_bytes(r, max)? {
                None => (Value::Null, sql_ty),
                Some(b) => (Value::Text(utf16_lossy(&b)), sql_ty),
            }
        }
        // VARCHAR / CHAR: code page 1252 text.
        0xA7 | 0xAF => {
            let max = check_max_len(ty, m(r.u16le())?)?;
            m(r.skip(5))?;
            let sql_ty = if ty == 0xAF {
                SqlType::Char(max.max(1))
            } else {
                SqlType::VarChar(text_len(max, 1))
            };
            match var_bytes(r, max)? {
                None => (Value::Null, sql_ty),
                Some(b) => (Value::Text(cp1252_decode(&b)), sql_ty),
            }
        }
        // VARBINARY / BINARY.
        0xA5 | 0xAD => {
            let max = check_max_len(ty, m(r.u16le())?)?;
            let sql_ty = if ty == 0xAD {
                SqlType::Binary(max.max(1))
            } else {
                SqlType::VarBinary(text_len(max, 1))
            };
            match var_bytes(r, max)? {
                None => (Value::Null, sql_ty),
                Some(b) => (Value::Blob(b), sql_ty),
            }
        }
        // NTEXT / TEXT (4-byte max length, collation) and IMAGE (4-byte max length),
        // as FreeTDS sends long strings and the statement of sp_prepexec.
        0x63 | 0x23 | 0x22 => {
            let _max = m(r.u32le())?;
            if ty != 0x22 {
                m(r.skip(5))?;
            }
            let (sql_ty, v) = match (ty, long_bytes(r)?) {
                (0x63, v) => (
                    SqlType::NVarChar(Len::Max),
                    v.map(|b| Value::Text(utf16_lossy(&b))),
                ),
                (0x23, v) => (
                    SqlType::VarChar(Len::Max),
                    v.map(|b| Value::Text(cp1252_decode(&b))),
                ),
                (_, v) => (SqlType::VarBinary(Len::Max), v.map(Value::Blob)),
            };
            (v.unwrap_or(Value::Null), sql_ty)
        }
        // XML: schema info (optional), then PLP UTF-16 text.
        0xF1 => {
            if m(r.u8())? == 1 {
                m(r.b_varchar())?;
                m(r.b_varchar())?;
                let n = m(r.u16le())? as usize;
                m(r.utf16(n))?;
            }
            match plp(r)? {
                None => (Value::Null, SqlType::Xml),
                Some(b) => {
                    let t = utf16_lossy(&b);
                    let t = t.strip_prefix('\u{FEFF}').map(str::to_string).unwrap_or(t);
                    (Value::Text(t), SqlType::Xml)
                }
            }
        }
        other => return Err(ValueError::Unsupported(other)),
    };
    // Dates past 9999-12-31 (e.g. a client's 24-bit -1) are not values of the type.
    let day = match v.0 {
        Value::Date(d) | Value::DateTime(d, _) | Value::DateTimeOffset(d, _, _) => Some(d),
        _ => None,
    };
    if day.is_some_and(|d| !(0..=dt::MAX_DAY).contains(&d)) {
        return Err(ValueError::Invalid(v.1));
    }
    Ok(v)
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn all_headers() -> Vec<u8> {
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
        assert_eq!(req.proc, Proc::Id(10));
        assert_eq!(req.params.len(), 2);
        assert_eq!(req.params[0].value, Value::Int(7));
        assert_eq!(req.params[1].value, Value::Null);
    }

    fn unnamed(p: &mut Vec<u8>) {
        p.push(0); // name length
        p.push(0); // status
    }

    #[test]
    fn parses_ntext_dates_and_rejects_bad_days() {
        let mut p = all_headers();
        p.extend_from_slice(&0xFFFFu16.to_le_bytes());
        p.extend_from_slice(&13u16.to_le_bytes()); // sp_prepexec
        p.extend_from_slice(&0u16.to_le_bytes());
        // NTEXT "ab": max length, collation, length, UTF-16.
        unnamed(&mut p);
        p.push(0x63);
        p.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        p.extend_from_slice(&COLLATION_BYTES);
        p.extend_from_slice(&4u32.to_le_bytes());
        p.extend_from_slice(&[b'a', 0, b'b', 0]);
        // DATETIME2(7) 2024-01-02 00:00:00.0000001
        unnamed(&mut p);
        p.extend_from_slice(&[0x2A, 7, 8, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&738_886u32.to_le_bytes()[..3]);
        let req = parse(&p).unwrap();
        assert_eq!(req.params[0].value, Value::Text("ab".into()));
        assert_eq!(req.params[0].ty, SqlType::NVarChar(Len::Max));
        assert_eq!(req.params[1].value, Value::DateTime(738_886, 1));
        assert_eq!(req.params[1].ty, SqlType::DateTime2(7));
        // DATEN with day 0xFFFFFF (past 9999-12-31): 8023, not a closed session.
        let mut bad = all_headers();
        bad.extend_from_slice(&0xFFFFu16.to_le_bytes());
        bad.extend_from_slice(&10u16.to_le_bytes());
        bad.extend_from_slice(&0u16.to_le_bytes());
        unnamed(&mut bad);
        bad.extend_from_slice(&[0x28, 3, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            parse(&bad),
            Err(RpcError::InvalidValue { index: 1, .. })
        ));
    }

    const COLLATION_BYTES: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

    /// An sp_executesql request with one unnamed parameter of TYPE_INFO and value `param`.
    fn one_param(param: &[u8]) -> Result<RpcRequest, RpcError> {
        let mut p = all_headers();
        p.extend_from_slice(&0xFFFFu16.to_le_bytes());
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        unnamed(&mut p);
        p.extend_from_slice(param);
        parse(&p)
    }

    fn invalid(param: &[u8]) -> bool {
        matches!(
            one_param(param),
            Err(RpcError::InvalidValue { index: 1, .. })
        )
    }

    #[test]
    fn values_outside_their_types_range_are_8023() {
        let datetime = |days: i32, t300: u32| {
            let mut v = vec![0x3D];
            v.extend_from_slice(&days.to_le_bytes());
            v.extend_from_slice(&t300.to_le_bytes());
            v
        };
        // DATETIME: 1/300 s of a day or more; days before 1753-01-01 or after 9999-12-31.
        assert!(invalid(&datetime(0, u32::MAX)));
        assert!(invalid(&datetime(0, 300 * 86_400)));
        assert!(invalid(&datetime(-53_691, 0)));
        assert!(invalid(&datetime(2_958_464, 0)));
        assert!(invalid(&[0x6F, 8, 8, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]));
        let first = one_param(&datetime(-53_690, 300 * 86_400 - 1)).unwrap();
        assert_eq!(
            first.params[0].value,
            Value::DateTime(dt::DAY_1753, dt::from_datetime_ticks(300 * 86_400 - 1))
        );
        // SMALLDATETIME: minutes of a day or more.
        assert!(invalid(&[0x3A, 0, 0, 0xA0, 0x05]));
        assert!(one_param(&[0x3A, 0, 0, 0x9F, 0x05]).is_ok());
        // DATETIMEOFFSET(0): UTC 0001-01-01 00:00 at an offset beyond ±14:00, or whose
        // local date falls before 0001-01-01.
        let dto = |offset: i16| {
            let mut v = vec![0x2B, 0, 8, 0, 0, 0, 0, 0, 0];
            v.extend_from_slice(&offset.to_le_bytes());
            v
        };
        assert!(invalid(&dto(841)));
        assert!(invalid(&dto(i16::MIN)));
        assert!(invalid(&dto(-1)));
        assert_eq!(
            one_param(&dto(840)).unwrap().params[0].value,
            Value::DateTimeOffset(0, 14 * 3600 * 10_000_000, 840)
        );
        // DECIMAL(2, 0): 100 has more digits than the precision.
        assert!(invalid(&[0x6A, 5, 2, 0, 5, 1, 100, 0, 0, 0]));
        assert!(one_param(&[0x6A, 5, 2, 0, 5, 1, 99, 0, 0, 0]).is_ok());
    }

    #[test]
    fn fixed_length_types_cannot_be_declared_max_8016() {
        let bad_length = |param: &[u8]| {
            matches!(
                one_param(param),
                Err(RpcError::InvalidLength { index: 1, ty, .. }) if ty == param[0]
            )
        };
        // CHAR / NCHAR with max length 0xFFFF (would be read as PLP), BINARY too.
        let mut char_max = vec![0xAF, 0xFF, 0xFF];
        char_max.extend_from_slice(&COLLATION_BYTES);
        char_max.extend_from_slice(&[0xFF; 8]);
        assert!(bad_length(&char_max));
        char_max[0] = 0xEF;
        assert!(bad_length(&char_max));
        assert!(bad_length(&[
            0xAD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
        ]));
        // Over 8000 bytes for a non-MAX type.
        let mut nvarchar = vec![0xE7];
        nvarchar.extend_from_slice(&8002u16.to_le_bytes());
        nvarchar.extend_from_slice(&COLLATION_BYTES);
        nvarchar.extend_from_slice(&0u16.to_le_bytes());
        assert!(bad_length(&nvarchar));
        // VARCHAR(MAX) is PLP: a NULL here.
        char_max[0] = 0xA7;
        let req = one_param(&char_max).unwrap();
        assert_eq!(req.params[0].value, Value::Null);
        assert_eq!(req.params[0].ty, SqlType::VarChar(Len::Max));
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
