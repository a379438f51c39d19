-- Conversation settings (ConversationSettings): whether members see the reasoning parts of AI
-- answers. An answer stamps the rule in force when it starts (im_messages.generation->>'reasoning').
ALTER TABLE conversations ADD COLUMN ai_reasoning text NOT NULL DEFAULT 'shown'
    CHECK (ai_reasoning IN ('shown', 'hidden'));
