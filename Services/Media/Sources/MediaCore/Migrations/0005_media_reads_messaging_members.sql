-- requires: 0004
-- The media service checks membership (upload_token, upload_complete, download, metadata,
-- delete) through messaging's read-only view messaging_members (messaging's 0004), never through
-- messaging's tables. Nothing to create: this waits for the view and checks that the columns
-- media reads are there, so a media replica is not ready before messaging's contract is.
-- Since this migration no other service reads `media` either (0002's last comment line is
-- history): messaging asks for an audio file's facts with the `media.attachment` command.

SELECT conversation_id, tenant_id, user_id, role FROM messaging_members LIMIT 0;
