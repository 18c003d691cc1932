//! A short list put in order with each item once, by a heap: the library's slice sorts are 2-6 KB of code for each item type in the kernel image (issue 10), its binary heap a few hundred bytes.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;

/// `items` in ascending order, each once. O(n log n), as a slice sort; items that compare equal
/// are the same item in every caller (session keys, names), so which one stays does not matter.
pub fn sorted_unique<T: Ord>(items: Vec<T>) -> Vec<T> {
    let mut sorted = BinaryHeap::from(items).into_sorted_vec();
    sorted.dedup();
    sorted
}

#[cfg(test)]
mod tests {
    use super::sorted_unique;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn puts_in_order_and_keeps_each_once() {
        assert_eq!(sorted_unique(vec![5, 1, 5, 3, 1, 9]), vec![1, 3, 5, 9]);
        assert_eq!(sorted_unique(Vec::<u32>::new()), Vec::<u32>::new());
    }
}
