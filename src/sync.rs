//! Locks that shrug off poisoning.
//!
//! A `std::sync` lock is poisoned when a thread panics while holding it. dfsd's critical
//! sections only swap or insert whole values (a map entry, a counter, a cached snapshot), so
//! the data behind a poisoned lock is still consistent; refusing every later caller would
//! turn one panicked task into a dead node. These extension methods take the lock and
//! recover the guard from a poisoned one, in one place instead of at every call site.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock` that recovers a poisoned guard.
pub trait Locked<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `RwLock::read` / `RwLock::write` that recover a poisoned guard.
pub trait ReadWriteLocked<T: ?Sized> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> ReadWriteLocked<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let m = Arc::new(Mutex::new(7));
        let rw = Arc::new(RwLock::new(String::from("kept")));
        let (m2, rw2) = (m.clone(), rw.clone());
        let joined = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = rw2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(joined.is_err());
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.locked() += 1;
        assert_eq!(*m.locked(), 8);
        rw.write_locked().push('!');
        assert_eq!(*rw.read_locked(), "kept!");
    }
}
