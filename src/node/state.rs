//! Persistent node state: the xTR-ID survives restarts (RFC 9301 §5.6: it identifies the
//! registrant across registrations), kept as hex in `<state_dir>/xtr-id`.

use std::path::Path;

use anyhow::Context;

/// Reads the xTR-ID from the state directory, creating a random one the first time.
pub fn xtr_id(dir: &Path) -> anyhow::Result<[u8; 16]> {
    let file = dir.join("xtr-id");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut id = [0u8; 16];
        hex::decode_to_slice(text.trim(), &mut id)
            .with_context(|| format!("{} does not hold a 32-digit hex xTR-ID", file.display()))?;
        return Ok(id);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let id: [u8; 16] = rand::random();
    std::fs::write(&file, format!("{}\n", hex::encode(id)))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn survives_restarts() {
        let d = tempfile::tempdir().unwrap();
        let a = super::xtr_id(&d.path().join("n1")).unwrap();
        let b = super::xtr_id(&d.path().join("n1")).unwrap();
        assert_eq!(a, b);
        std::fs::write(d.path().join("n1/xtr-id"), "zz").unwrap();
        assert!(super::xtr_id(&d.path().join("n1")).is_err());
    }
}
