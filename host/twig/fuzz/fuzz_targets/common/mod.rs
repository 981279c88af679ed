//! What the file-writing targets share: a scratch data directory removed
//! on drop, and the built-in board.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use twig::board::Board;

pub struct Dir(pub PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty directory under `$TMPDIR`, named after `tag`.
pub fn scratch(tag: &str) -> Dir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let d = base.join(format!(
        "twig-{tag}-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    Dir(d)
}

/// The built-in `sim` board, parsed once.
pub fn board() -> Board {
    static B: OnceLock<Board> = OnceLock::new();
    B.get_or_init(Board::sim).clone()
}
