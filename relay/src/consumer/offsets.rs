//! The offset stored after a message is processed: the offset of the
//! *next* message to read, with the partition leader epoch the message was
//! fetched under (so a log truncated by an unclean leader election is
//! detected rather than skipped).
//!
//! Why not rdkafka's `store_offset`/`store_offset_from_message`: both call
//! librdkafka's legacy `rd_kafka_offset_store`, which adds 1 itself (see
//! rdkafka.h) and carries no leader epoch; rdkafka 0.39 exposes no epoch on
//! messages or partition lists. So this module reads and sets the epoch
//! through the two C calls that do, and the caller stores the list with
//! `store_offsets` (`rd_kafka_offsets_store`, which stores what it is given).
#![allow(unsafe_code)]

use rdkafka::bindings as rdsys;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Where a partition's consumption resumes after one processed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset of the next message to read (the processed one's + 1).
    pub offset: i64,
    /// The leader epoch the processed message was fetched under, if known.
    pub leader_epoch: Option<i32>,
}

impl NextOffset {
    /// The position after `msg`.
    pub fn after(msg: &BorrowedMessage<'_>) -> Self {
        // SAFETY: `msg.ptr()` is the live librdkafka message that `msg`
        // borrows; the call only reads one of its fields.
        let epoch = unsafe { rdsys::rd_kafka_message_leader_epoch(msg.ptr()) };
        NextOffset::from_parts(msg.topic(), msg.partition(), msg.offset(), epoch)
    }

    /// The position after the message at `offset` (`epoch` < 0: unknown).
    pub fn from_parts(topic: &str, partition: i32, offset: i64, epoch: i32) -> Self {
        NextOffset {
            topic: topic.to_owned(),
            partition,
            offset: offset + 1,
            leader_epoch: (epoch >= 0).then_some(epoch),
        }
    }

    /// A one-element list for `Consumer::store_offsets`.
    pub fn to_list(&self) -> KafkaResult<TopicPartitionList> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(self.offset))?;
        if let Some(epoch) = self.leader_epoch {
            // SAFETY: `tpl` owns exactly one element, `elems[0]`, added just
            // above; the pointer is valid while `tpl` lives.
            unsafe {
                let list = &*tpl.ptr();
                rdsys::rd_kafka_topic_partition_set_leader_epoch(list.elems, epoch);
            }
        }
        Ok(tpl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_epoch(tpl: &TopicPartitionList) -> i32 {
        // SAFETY: the list has one element (checked by the caller's asserts).
        unsafe { rdsys::rd_kafka_topic_partition_get_leader_epoch((*tpl.ptr()).elems) }
    }

    #[test]
    fn the_stored_offset_is_the_next_one_to_read_with_its_epoch() {
        let next = NextOffset::from_parts("payment.authorized", 4, 41, 7);
        assert_eq!(next.offset, 42);
        let tpl = next.to_list().unwrap();
        assert_eq!(tpl.count(), 1);
        let elem = tpl.find_partition("payment.authorized", 4).unwrap();
        assert_eq!(elem.offset(), Offset::Offset(42), "not 41, not 43");
        assert_eq!(stored_epoch(&tpl), 7);
    }

    #[test]
    fn an_unknown_epoch_is_left_unset() {
        let next = NextOffset::from_parts("t", 0, 0, -1);
        assert_eq!(next.leader_epoch, None);
        let tpl = next.to_list().unwrap();
        assert_eq!(
            tpl.find_partition("t", 0).unwrap().offset(),
            Offset::Offset(1)
        );
        assert_eq!(stored_epoch(&tpl), -1);
    }
}
