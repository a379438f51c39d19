-- requires: 0004
-- The calls service checks membership (initiate, get, history) through messaging's read-only
-- view messaging_members (messaging's 0004), never through messaging's tables. Nothing to
-- create: this waits for the view and checks that the columns calls reads are there, so a calls
-- replica is not ready before messaging's contract is. (calls.conversation_id keeps its foreign
-- key to messaging's conversations from 0003: deleting a conversation deletes its calls.)

SELECT conversation_id, tenant_id, user_id FROM messaging_members LIMIT 0;
