//! The inode-number ↔ path table: FUSE speaks inode numbers, the file
//! server speaks paths. Numbers are the image's own (ext2) inode numbers,
//! except that the root is FUSE's 1, so they stay stable across lookups and
//! hard links share one.

use std::collections::HashMap;

/// FUSE's root inode number.
pub const ROOT: u64 = 1;

/// ext2's root inode number (ext2 inode 1 is the bad-blocks inode, never
/// reachable by a path, so 1 is free for FUSE's root).
const EXT2_ROOT: u64 = 2;

/// The FUSE inode number for an image inode number.
pub fn fuse_ino(image_ino: u64) -> u64 {
    if image_ino == EXT2_ROOT {
        ROOT
    } else {
        image_ino
    }
}

/// Known paths by inode number, and the reverse. A hard-linked file keeps
/// the path it was last looked up by (any of its names reaches it).
#[derive(Debug)]
pub struct InodeTable {
    paths: HashMap<u64, String>,
    inos: HashMap<String, u64>,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = InodeTable {
            paths: HashMap::new(),
            inos: HashMap::new(),
        };
        t.insert(ROOT, "/".into());
        t
    }
}

impl InodeTable {
    /// The path of `ino`, if it was looked up.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.paths.get(&ino).map(String::as_str)
    }

    /// The number of `path`, if it was looked up.
    pub fn ino(&self, path: &str) -> Option<u64> {
        self.inos.get(path).copied()
    }

    /// Records that `path` is `ino`.
    pub fn insert(&mut self, ino: u64, path: String) {
        if let Some(old) = self.inos.insert(path.clone(), ino) {
            if old != ino && self.paths.get(&old).is_some_and(|p| *p == path) {
                self.paths.remove(&old);
            }
        }
        if let Some(old_path) = self.paths.insert(ino, path.clone()) {
            if old_path != path && self.inos.get(&old_path) == Some(&ino) {
                // A hard link: the old name still names the same inode.
                self.inos.insert(old_path, ino);
            }
        }
    }

    /// Forgets `path` (unlinked or removed).
    pub fn remove_path(&mut self, path: &str) {
        if let Some(ino) = self.inos.remove(path) {
            if self.paths.get(&ino).is_some_and(|p| p == path) {
                // Another name of a hard link may remain.
                match self.inos.iter().find(|(_, &i)| i == ino) {
                    Some((other, _)) => {
                        let other = other.clone();
                        self.paths.insert(ino, other);
                    }
                    None => {
                        self.paths.remove(&ino);
                    }
                }
            }
        }
    }

    /// `from` (and everything below it) is now `to`; whatever `to` named
    /// before is gone.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.remove_path(to);
        let below = format!("{}/", from.trim_end_matches('/'));
        let moved: Vec<(String, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&below))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            self.inos.remove(&old);
            let new = format!("{to}{}", &old[from.len()..]);
            self.inos.insert(new.clone(), ino);
            if self.paths.get(&ino).is_some_and(|p| *p == old) {
                self.paths.insert(ino, new);
            }
        }
    }
}

/// `parent`/`name` as an absolute image path.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_fuse_one_and_other_numbers_are_the_images() {
        assert_eq!(fuse_ino(2), ROOT);
        assert_eq!(fuse_ino(12), 12);
        assert_eq!(InodeTable::default().path(ROOT), Some("/"));
    }

    #[test]
    fn rename_moves_a_subtree_and_replaces_the_target() {
        let mut t = InodeTable::default();
        t.insert(10, "/a".into());
        t.insert(11, "/a/b".into());
        t.insert(12, "/a/b/c".into());
        t.insert(13, "/ab".into());
        t.insert(14, "/z".into());
        t.rename("/a", "/z");
        assert_eq!(t.path(10), Some("/z"));
        assert_eq!(t.path(11), Some("/z/b"));
        assert_eq!(t.path(12), Some("/z/b/c"));
        assert_eq!(t.path(13), Some("/ab"));
        assert_eq!(t.path(14), None);
    }

    #[test]
    fn unlinking_one_name_of_a_hard_link_keeps_the_other() {
        let mut t = InodeTable::default();
        t.insert(20, "/x".into());
        t.insert(20, "/y".into());
        t.remove_path("/y");
        assert_eq!(t.path(20), Some("/x"));
        t.remove_path("/x");
        assert_eq!(t.path(20), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
