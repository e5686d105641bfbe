//! Microsoft Entra ID logins: the access token a LOGIN7 carries in its FeatureExt block
//! (MS-TDS 2.2.6.4: feature FEDAUTH, library SECURITYTOKEN).

use super::tokens::{utf16_lossy, Reader};

/// FeatureExt feature id of FEDAUTH.
const FEATURE_FEDAUTH: u8 = 0x02;
/// The FeatureExt terminator.
const FEATURE_TERMINATOR: u8 = 0xFF;
/// `bFedAuthLibrary` of a client that sends a ready-made token.
const LIBRARY_SECURITY_TOKEN: u8 = 0x01;
/// LOGIN7 `OptionFlags3` bit `fExtension`: the ibExtension field points at FeatureExt.
const OPTION_FLAGS3_EXTENSION: u8 = 0x10;

/// The access token of a LOGIN7 `payload`, if it carries one. `flags3` is the message's
/// OptionFlags3 byte and `extension` its (ibExtension, cbExtension) pair. `None` when there
/// is no FeatureExt block, no FEDAUTH feature, another FEDAUTH library, or the block is
/// malformed (the login then has no token, and fails as a login without credentials).
pub(crate) fn access_token(
    payload: &[u8],
    flags3: u8,
    extension: (usize, usize),
) -> Option<String> {
    if flags3 & OPTION_FLAGS3_EXTENSION == 0 || extension.1 < 4 {
        return None;
    }
    let mut at = Reader::new(payload.get(extension.0..)?);
    let start = at.u32le()? as usize;
    let mut r = Reader::new(payload.get(start..)?);
    loop {
        let id = r.u8()?;
        if id == FEATURE_TERMINATOR {
            return None;
        }
        let len = r.u32le()? as usize;
        let data = r.bytes(len)?;
        if id != FEATURE_FEDAUTH {
            continue;
        }
        let mut f = Reader::new(data);
        let options = f.u8()?;
        if options >> 1 != LIBRARY_SECURITY_TOKEN {
            return None;
        }
        let token_len = f.u32le()? as usize;
        return Some(utf16_lossy(f.bytes(token_len)?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_with(features: &[u8]) -> Vec<u8> {
        // 8 bytes of padding, then the DWORD offset at 8, then the features at 12.
        let mut msg = vec![0u8; 8];
        msg.extend_from_slice(&12u32.to_le_bytes());
        msg.extend_from_slice(features);
        msg
    }

    fn fedauth(token: &str, library: u8) -> Vec<u8> {
        let token: Vec<u8> = token.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut data = vec![library << 1];
        data.extend_from_slice(&(token.len() as u32).to_le_bytes());
        data.extend_from_slice(&token);
        let mut out = vec![FEATURE_FEDAUTH];
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn finds_the_token_after_other_features() {
        let mut features = vec![0x04, 1, 0, 0, 0, 0x01]; // UTF8_SUPPORT, 1 byte
        features.extend(fedauth("eyJ0b2tlbiI", LIBRARY_SECURITY_TOKEN));
        features.push(FEATURE_TERMINATOR);
        let msg = login_with(&features);
        assert_eq!(
            access_token(&msg, OPTION_FLAGS3_EXTENSION, (8, 4)).as_deref(),
            Some("eyJ0b2tlbiI")
        );
        // Without fExtension the block is not read.
        assert_eq!(access_token(&msg, 0, (8, 4)), None);
    }

    #[test]
    fn other_libraries_and_malformed_blocks_give_no_token() {
        let mut features = fedauth("x", 0x02); // ADAL workflow: not a ready token
        features.push(FEATURE_TERMINATOR);
        assert_eq!(
            access_token(&login_with(&features), OPTION_FLAGS3_EXTENSION, (8, 4)),
            None
        );
        let mut truncated = fedauth("abcdef", LIBRARY_SECURITY_TOKEN);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(
            access_token(&login_with(&truncated), OPTION_FLAGS3_EXTENSION, (8, 4)),
            None
        );
        assert_eq!(
            access_token(&[0u8; 4], OPTION_FLAGS3_EXTENSION, (8, 4)),
            None
        );
    }
}
