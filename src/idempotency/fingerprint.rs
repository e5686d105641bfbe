//! The request fingerprint recorded with an idempotency key: a stable hash of what the
//! guarded write would do (its operation name, SQL text and every parameter's type and
//! value), so a second request with the same key and a different body is refused as a
//! conflict instead of answered "replayed".
//!
//! Stable across processes and crate versions that keep this encoding: each item is a type
//! tag and its value in a fixed byte layout (lengths included, so no two different lists
//! encode alike), hashed with 128-bit FNV-1a. It detects a reused key, it is not a
//! security measure (an attacker who controls keys controls the request anyway).

use tiberius::{ColumnData, ToSql};

use crate::sql::Param;

/// The fingerprint's text form: a versioned prefix and 32 hex digits (fits
/// `NVARCHAR(64)`). `returns_rows` marks an `idempotent_query` (whose record keeps the
/// returned rows), so a key cannot be replayed across the two kinds.
pub(crate) fn fingerprint(
    operation: &str,
    returns_rows: bool,
    sql: &str,
    params: &[Param],
) -> String {
    let mut hash = Fnv1a128::new();
    hash.item(b"operation", operation.as_bytes());
    if returns_rows {
        hash.item(b"returns", b"rows");
    }
    hash.item(b"sql", sql.as_bytes());
    for param in params {
        encode(&mut hash, &param.to_sql());
    }
    format!("fnv1a128:{:032x}", hash.finish())
}

struct Fnv1a128(u128);

impl Fnv1a128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Fnv1a128(Self::OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// A tagged, length-prefixed item.
    fn item(&mut self, tag: &[u8], value: &[u8]) {
        self.bytes(&(tag.len() as u64).to_le_bytes());
        self.bytes(tag);
        self.bytes(&(value.len() as u64).to_le_bytes());
        self.bytes(value);
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// One parameter: its wire type and value; NULLs of different types differ.
fn encode(hash: &mut Fnv1a128, data: &ColumnData<'_>) {
    fn opt<T>(hash: &mut Fnv1a128, tag: &[u8], value: Option<T>, bytes: impl FnOnce(T) -> Vec<u8>) {
        match value {
            Some(v) => hash.item(tag, &bytes(v)),
            None => hash.item(tag, b"\xffNULL"),
        }
    }
    match data {
        ColumnData::U8(v) => opt(hash, b"u8", *v, |v| vec![v]),
        ColumnData::I16(v) => opt(hash, b"i16", *v, |v| v.to_le_bytes().to_vec()),
        ColumnData::I32(v) => opt(hash, b"i32", *v, |v| v.to_le_bytes().to_vec()),
        ColumnData::I64(v) => opt(hash, b"i64", *v, |v| v.to_le_bytes().to_vec()),
        ColumnData::F32(v) => opt(hash, b"f32", *v, |v| v.to_bits().to_le_bytes().to_vec()),
        ColumnData::F64(v) => opt(hash, b"f64", *v, |v| v.to_bits().to_le_bytes().to_vec()),
        ColumnData::Bit(v) => opt(hash, b"bit", *v, |v| vec![u8::from(v)]),
        ColumnData::String(v) => opt(hash, b"str", v.as_deref(), |v| v.as_bytes().to_vec()),
        ColumnData::Guid(v) => opt(hash, b"guid", *v, |v| v.as_bytes().to_vec()),
        ColumnData::Binary(v) => opt(hash, b"bin", v.as_deref(), <[u8]>::to_vec),
        ColumnData::Numeric(v) => opt(hash, b"numeric", *v, |v| {
            let mut b = v.value().to_le_bytes().to_vec();
            b.push(v.scale());
            b
        }),
        ColumnData::Xml(v) => opt(hash, b"xml", v.as_deref(), |v| {
            v.as_ref().as_bytes().to_vec()
        }),
        ColumnData::DateTime(v) => opt(hash, b"datetime", *v, |v| {
            let mut b = v.days().to_le_bytes().to_vec();
            b.extend(v.seconds_fragments().to_le_bytes());
            b
        }),
        ColumnData::SmallDateTime(v) => opt(hash, b"smalldatetime", *v, |v| {
            let mut b = v.days().to_le_bytes().to_vec();
            b.extend(v.seconds_fragments().to_le_bytes());
            b
        }),
        ColumnData::Time(v) => opt(hash, b"time", *v, time),
        ColumnData::Date(v) => opt(hash, b"date", *v, |v| v.days().to_le_bytes().to_vec()),
        ColumnData::DateTime2(v) => opt(hash, b"datetime2", *v, datetime2),
        ColumnData::DateTimeOffset(v) => opt(hash, b"datetimeoffset", *v, |v| {
            let mut b = datetime2(v.datetime2());
            b.extend(v.offset().to_le_bytes());
            b
        }),
    }
}

fn time(t: tiberius::time::Time) -> Vec<u8> {
    let mut b = t.increments().to_le_bytes().to_vec();
    b.push(t.scale());
    b
}

fn datetime2(d: tiberius::time::DateTime2) -> Vec<u8> {
    let mut b = d.date().days().to_le_bytes().to_vec();
    b.extend(time(d.time()));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_request_same_fingerprint_and_any_difference_changes_it() {
        let sql = "INSERT INTO t (id, note) VALUES (@P1, @P2)";
        let base = fingerprint("create", false, sql, &[7.into(), "a".into()]);
        assert!(base.starts_with("fnv1a128:") && base.len() == 41, "{base}");
        assert_eq!(
            base,
            fingerprint("create", false, sql, &[7.into(), "a".into()])
        );
        for other in [
            fingerprint("create", false, sql, &[8.into(), "a".into()]),
            fingerprint("create", false, sql, &[7.into(), "b".into()]),
            fingerprint("create", false, sql, &[7i64.into(), "a".into()]),
            fingerprint("create", false, sql, &[7.into(), Param::Text(None)]),
            fingerprint("create", false, sql, &[7.into()]),
            fingerprint("update", false, sql, &[7.into(), "a".into()]),
            fingerprint("create", true, sql, &[7.into(), "a".into()]),
            fingerprint(
                "create",
                false,
                "INSERT INTO t (id) VALUES (@P1)",
                &[7.into(), "a".into()],
            ),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        // Stored fingerprints must match across restarts and releases: a change here is
        // a breaking change for every recorded key (bump the `fnv1a128:` prefix instead).
        assert_eq!(fingerprint("op", false, "SELECT @P1", &[1.into()]), PINNED,);
    }

    // Computed independently (FNV-1a 128 over the documented encoding).
    const PINNED: &str = "fnv1a128:8a008bbcdc3b564081df73e077d94d46";
}
