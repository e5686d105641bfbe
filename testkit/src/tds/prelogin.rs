//! PRELOGIN: parsing the client's options and building the server's reply.

use super::tokens::Reader;

/// What the server learns from a client PRELOGIN.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientPrelogin {
    /// The client's ENCRYPTION option (0 off, 1 on, 2 not supported, 3 required).
    pub encryption: Option<u8>,
}

/// Parses the option table leniently; `None` if it is malformed.
pub(crate) fn parse(payload: &[u8]) -> Option<ClientPrelogin> {
    let mut r = Reader::new(payload);
    let mut out = ClientPrelogin::default();
    loop {
        let token = r.u8()?;
        if token == 0xFF {
            return Some(out);
        }
        let off = u16::from_be_bytes([r.u8()?, r.u8()?]) as usize;
        let len = u16::from_be_bytes([r.u8()?, r.u8()?]) as usize;
        let data = payload.get(off..off.checked_add(len)?)?;
        if token == 1 {
            out.encryption = data.first().copied();
        }
    }
}

/// Builds the reply: VERSION, ENCRYPTION = `encryption` (the negotiated value, see
/// [`super::tls::negotiate`]), INSTOPT (valid), MARS off.
pub(crate) fn reply(encryption: u8) -> Vec<u8> {
    let options: [(u8, Vec<u8>); 4] = [
        (0x00, vec![16, 0, 0x10, 0x27, 0, 0]), // VERSION 16.0.4135, sub-build 0
        (0x01, vec![encryption]),              // ENCRYPTION
        (0x02, vec![0]),                       // INSTOPT: instance valid
        (0x04, vec![0]),                       // MARS: off
    ];
    let table_len = options.len() * 5 + 1;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (token, value) in &options {
        table.push(*token);
        table.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    table.push(0xFF);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_round_trips_through_parse() {
        for encryption in 0..4 {
            let r = reply(encryption);
            assert_eq!(
                parse(&r),
                Some(ClientPrelogin {
                    encryption: Some(encryption)
                })
            );
        }
    }

    #[test]
    fn malformed_is_none() {
        assert_eq!(parse(&[0x01, 0x00, 0x40, 0x00, 0x01]), None);
        assert_eq!(parse(&[]), None);
    }
}
