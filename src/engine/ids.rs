//! Typed identities, and the tables that hand them out.
//!
//! A source, a pool and a job are named by their own newtype, so a pool's index can never
//! be passed where a source's is meant. Sources and pools live in a [`Table`] (a slab):
//! a reload that removes one frees its entry once its work is done, so reloads do not
//! accumulate retired entries. A freed key may be reused by a later entry; every timer
//! and reference to the old one is gone by then (see `reload.rs`).

use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use slab::Slab;

/// A configured source (its slot in the engine's source table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);

/// A configured pool (its slot in the engine's pool table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub usize);

/// One message on its way through ferry, unique per process (logs, `/jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A key type of a [`Table`].
pub trait Key: Copy {
    /// From the slab key.
    fn from_index(index: usize) -> Self;
    /// The slab key.
    fn index(self) -> usize;
}

impl Key for SourceId {
    fn from_index(index: usize) -> Self {
        SourceId(index)
    }
    fn index(self) -> usize {
        self.0
    }
}

impl Key for PoolId {
    fn from_index(index: usize) -> Self {
        PoolId(index)
    }
    fn index(self) -> usize {
        self.0
    }
}

/// Entries keyed by a typed id, in insertion order of their keys.
#[derive(Debug)]
pub struct Table<K, T> {
    slab: Slab<T>,
    key: PhantomData<K>,
}

impl<K, T> Default for Table<K, T> {
    fn default() -> Self {
        Table {
            slab: Slab::new(),
            key: PhantomData,
        }
    }
}

impl<K: Key, T> Table<K, T> {
    /// Adds an entry; its new key.
    pub fn insert(&mut self, value: T) -> K {
        K::from_index(self.slab.insert(value))
    }

    /// Removes an entry (a no-op for an unknown key).
    pub fn remove(&mut self, key: K) -> Option<T> {
        self.slab.try_remove(key.index())
    }

    /// The entry of `key`, if any.
    pub fn get(&self, key: K) -> Option<&T> {
        self.slab.get(key.index())
    }

    /// The entry of `key`, if any.
    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        self.slab.get_mut(key.index())
    }

    /// Every key, as a list (so the caller may mutate the table while walking it).
    pub fn keys(&self) -> Vec<K> {
        self.slab.iter().map(|(i, _)| K::from_index(i)).collect()
    }

    /// The key of slot `index`, if it holds an entry: walking `0..slot_count()` visits
    /// every key without allocating a list (the loop's per-turn walks use it).
    pub fn key_at(&self, index: usize) -> Option<K> {
        self.slab.contains(index).then(|| K::from_index(index))
    }

    /// One past the highest slot that may hold an entry.
    pub fn slot_count(&self) -> usize {
        self.slab.capacity()
    }

    /// Entries with their keys.
    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slab.iter().map(|(i, v)| (K::from_index(i), v))
    }

    /// Entries.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slab.iter().map(|(_, v)| v)
    }

    /// Entries, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slab.iter_mut().map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The first key whose entry matches.
    pub fn position(&self, mut matches: impl FnMut(&T) -> bool) -> Option<K> {
        self.iter().find(|(_, v)| matches(v)).map(|(k, _)| k)
    }
}

/// Indexing with a key that must be live: the engine only holds keys of live entries
/// (a removed entry's key is dropped everywhere first). A stale key is a bug in ferry,
/// never reachable from a peer's input.
impl<K: Key, T> Index<K> for Table<K, T> {
    type Output = T;
    #[allow(clippy::indexing_slicing)]
    fn index(&self, key: K) -> &T {
        &self.slab[key.index()]
    }
}

impl<K: Key, T> IndexMut<K> for Table<K, T> {
    #[allow(clippy::indexing_slicing)]
    fn index_mut(&mut self, key: K) -> &mut T {
        &mut self.slab[key.index()]
    }
}
