-- Grouped pages (notify::routing `group_by`): a notification that becomes due first
-- (the leader) takes the other pending notifications of its group on the same
-- channel; they wait in state 'grouped' (pointing at the leader) and take the
-- leader's final state (delivered or dead) when it finishes. The leader records the
-- group's key and the snapshots of the alerts it carries.
--
-- Invariant: an alert's later notification to a channel is not sent while an earlier
-- one is pending, directly or inside a pending leader (claim_due checks both).

ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('pending', 'grouped', 'delivered', 'dead', 'skipped'));
ALTER TABLE notifications ADD COLUMN group_key text;
ALTER TABLE notifications ADD COLUMN grouped_into uuid REFERENCES notifications (id) ON DELETE SET NULL;
ALTER TABLE notifications ADD COLUMN members jsonb;
CREATE INDEX notifications_group ON notifications (channel_id, group_key, delivered_at)
    WHERE group_key IS NOT NULL;
CREATE INDEX notifications_grouped_into ON notifications (grouped_into)
    WHERE grouped_into IS NOT NULL;
