-- Membership as other services may read it: part of the messaging service's contract.
-- Media and calls check membership through this view only, never through messaging's tables, so
-- messaging may change conversation_members freely as long as a later migration keeps this
-- view's columns and their meaning:
--   conversation_id  the conversation
--   tenant_id        the member's tenant (the conversation's)
--   user_id          the member
--   role             owner | admin | member | assistant
-- Read-only: membership changes only through messaging's commands (the trigger refuses writes).
-- A migration of another service that relies on it starts with `-- requires: 0004`.

CREATE VIEW messaging_members AS
    SELECT conversation_id, tenant_id, user_id, role FROM conversation_members;

CREATE FUNCTION messaging_members_read_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'messaging_members is read-only: membership changes go through the messaging service';
END
$$;

CREATE TRIGGER messaging_members_read_only INSTEAD OF INSERT OR UPDATE OR DELETE ON messaging_members
    FOR EACH ROW EXECUTE FUNCTION messaging_members_read_only();
