//! Writes in groups: what arrives while a write is on its way waits, then goes in the next one,
//! as PostgreSQL's and RocksDB's write groups do. No timer: an item alone on an idle inbox is
//! written at once, and under load a group is as large as what came during one write.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The items waiting for the next group, and whether a writer is at work. One per kind of
/// write (commits, outcomes, renewals), shared by everything that submits it.
pub(crate) struct Batcher<T, A> {
    queue: Mutex<Queue<T, A>>,
    /// The most items in one group.
    most: usize,
}

struct Queue<T, A> {
    waiting: Vec<(T, oneshot::Sender<A>)>,
    writing: bool,
}

impl<T: Send + 'static, A: Send + 'static> Batcher<T, A> {
    /// Groups of at most `most` items.
    pub(crate) fn new(most: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                writing: false,
            }),
            most: most.max(1),
        }
    }

    /// Queues `item` and, unless a writer is at work, starts one that writes groups with
    /// `write` (which answers each item of a group, in order) until none waits. `None` when the
    /// writer stopped without answering it (it panicked, or the runtime is shutting down). A
    /// caller that stops waiting has its item written all the same.
    pub(crate) async fn submit<W, Fut>(self: &Arc<Self>, item: T, write: W) -> Option<A>
    where
        W: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push((item, answer));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).write_groups(write));
        }
        answered.await.ok()
    }

    /// Writes groups until none waits.
    async fn write_groups<W, Fut>(self: Arc<Self>, write: W)
    where
        W: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<A>>,
    {
        let mut writer = Writer(&self, true);
        loop {
            let group = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    writer.1 = false;
                    return;
                }
                let rest = queue.waiting.len().saturating_sub(self.most);
                let mut group = std::mem::take(&mut queue.waiting);
                queue.waiting = group.split_off(group.len() - rest);
                group
            };
            let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().unzip();
            for (answer, written) in answers.into_iter().zip(write(items).await) {
                let _ = answer.send(written);
            }
        }
    }
}

/// A writer at work: should it stop before the queue is empty (a panic, or its task dropped
/// as the runtime shuts down), the items waiting are failed and the next item starts a new
/// writer, so that none waits for one that is gone.
struct Writer<'b, T, A>(&'b Batcher<T, A>, bool);

impl<T, A> Drop for Writer<'_, T, A> {
    fn drop(&mut self) {
        if self.1 {
            let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.writing = false;
            // Their senders dropped: each caller hears `None`.
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arriving_during_a_write_share_the_next_one() {
        let batcher = Arc::new(Batcher::<u32, (u32, usize)>::new(100));
        let (release, released) = tokio::sync::watch::channel(false);
        let (taken, mut groups) = tokio::sync::mpsc::unbounded_channel();
        let write = move |group: Vec<u32>| {
            let (mut released, taken) = (released.clone(), taken.clone());
            async move {
                let size = group.len();
                let _ = taken.send(size);
                let _ = released.wait_for(|go| *go).await;
                group.into_iter().map(|item| (item, size)).collect()
            }
        };
        let submit = |item| {
            let (batcher, write) = (Arc::clone(&batcher), write.clone());
            tokio::spawn(async move { batcher.submit(item, write).await })
        };
        let first = submit(0);
        // The first group taken (its write waits for the release), the rest arrive.
        assert_eq!(groups.recv().await, Some(1));
        let rest: Vec<_> = (1..=5).map(submit).collect();
        while batcher.queue.lock().unwrap().waiting.len() < 5 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some((0, 1)));
        for (item, answer) in (1..=5).zip(rest) {
            assert_eq!(
                answer.await.unwrap(),
                Some((item, 5)),
                "one group of the five"
            );
        }
    }

    #[tokio::test]
    async fn a_group_is_at_most_its_bound() {
        let batcher = Arc::new(Batcher::<u32, usize>::new(2));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let write = {
            let gate = Arc::clone(&gate);
            move |group: Vec<u32>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    vec![group.len(); group.len()]
                }
            }
        };
        let submitted: Vec<_> = (0..5)
            .map(|item| {
                let (batcher, write) = (Arc::clone(&batcher), write.clone());
                tokio::spawn(async move { batcher.submit(item, write).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(10);
        let mut sizes = Vec::new();
        for answer in submitted {
            sizes.push(answer.await.unwrap().unwrap());
        }
        assert!(sizes.iter().all(|size| *size <= 2), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_writer_that_panics_fails_those_waiting_and_the_next_item_writes() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(100));
        let panicking = |_: Vec<u32>| async { panic!("the write failed") };
        assert_eq!(batcher.submit(1, panicking).await, None);
        let echo = |group: Vec<u32>| async move { group };
        assert_eq!(batcher.submit(2, echo).await, Some(2));
    }
}
