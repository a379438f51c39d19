"""Two people in two browsers: a conversation, messages, typing, read receipts, edit and recall,
and a reconnect after the server side dropped the socket."""

from harness import Browser, restart_gateway, rest, unique


def test_direct_conversation_messages_typing_receipts_and_reconnect(browsers):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice = Browser(alice_id, gateway=1, name="alice")
    browsers.append(alice)
    bob = Browser(bob_id, gateway=2, name="bob")
    browsers.append(bob)

    # Alice starts a direct conversation with Bob and writes.
    alice.find("#new-members").send_keys(bob_id)
    alice.find("#new-conv button[type=submit]").click()
    alice.wait_text("#chat-title", bob_id)
    alice.send("hello bob")
    # The optimistic echo is replaced by the stored message (it gets a seq).
    alice.wait(lambda: alice.finds("#message-list li[data-seq]") and "hello bob" in alice.messages()[-1], "stored message")
    alice.wait(lambda: not alice.finds("#message-list li.pending"), "no pending echo left")

    # Bob sees the conversation appear with one unread message and its text, live.
    bob.wait_text("#conv-list .conv-last", "hello bob")
    bob.wait_text("#conv-list .unread", "1")
    # Presence: Bob is online for Alice.
    alice.wait_text("#chat-presence", f"{bob_id} online")

    bob.open_conversation(alice_id)
    bob.wait(lambda: "hello bob" in " ".join(bob.messages()), "Bob sees the message")
    bob.wait(lambda: not bob.finds("#conv-list .unread"), "unread count cleared")
    # Read receipt: Alice's message is marked seen.
    alice.wait_text("#message-list li.mine .seen", "seen")

    # Typing indicator.
    bob.find("#compose").send_keys("typing something")
    alice.wait_text("#typing", f"{bob_id} is typing")
    bob.find("#send").click()
    alice.wait(lambda: "typing something" in alice.messages()[-1], "Bob's reply")
    alice.wait(lambda: alice.text("#typing") == "", "typing indicator gone after the send")

    # Edit and recall reach the other side.
    alice.send("to be edited")
    bob.wait(lambda: "to be edited" in bob.messages()[-1], "Bob sees the message to edit")
    alice.js("window.prompt = () => 'edited text'; window.confirm = () => true;")
    alice.click("#message-list li.mine:last-child .edit")
    bob.wait(lambda: "edited text" in bob.messages()[-1], "Bob sees the edit")
    bob.wait_text("#message-list li:last-child .edited", "edited")
    alice.click("#message-list li.mine:last-child .recall")
    bob.wait(lambda: "message recalled" in bob.messages()[-1], "Bob sees the recall")

    # The server drops Alice's socket (her gateway restarts); Bob writes meanwhile through the
    # other gateway. Alice shows the offline banner, reconnects and catches up.
    conversation = alice.js("return document.querySelector('#conv-list button.current').dataset.id")

    def while_down():
        alice.wait(lambda: alice.find("#offline").is_displayed(), "offline banner")
        token = bob.token()
        for text in ("missed one", "missed two"):
            rest("POST", "/messages", token, {"conversation_id": conversation, "content": text}, gateway=2)

    restart_gateway(1, down_while=while_down)
    alice.wait(lambda: not alice.find("#offline").is_displayed(), "banner gone after the reconnect", timeout=40)
    alice.wait(lambda: alice.messages()[-2:] and "missed one" in alice.messages()[-2] and "missed two" in alice.messages()[-1],
               "the missed messages, in order")
    # Live again after the reconnect.
    bob.send("after the reconnect")
    alice.wait(lambda: "after the reconnect" in alice.messages()[-1], "a live message after the reconnect")
    seqs = [int(s) for s in alice.js("return [...document.querySelectorAll('#message-list li[data-seq]')].map(l => l.dataset.seq)")]
    assert seqs == sorted(set(seqs)), f"messages in seq order without duplicates: {seqs}"


def test_history_pages_back(browsers):
    from harness import dev_token

    alice_id, bob_id = unique("alice"), unique("bob")
    bob_token = dev_token(bob_id)
    conversation = rest("POST", "/conversations", bob_token, {"type": "group", "name": f"paging {bob_id}",
                                                              "member_ids": [alice_id]})["conversation_id"]
    for i in range(35):
        rest("POST", "/messages", bob_token, {"conversation_id": conversation, "content": f"old message {i}"})
    alice = Browser(alice_id, gateway=1, name="alice")
    browsers.append(alice)
    alice.wait(lambda: int(alice.text("#conv-list .unread") or 0) >= 35, "35 unread messages")
    alice.open_conversation(f"paging {bob_id}")
    alice.wait(lambda: len(alice.finds("#message-list li[data-seq]")) >= 30, "the newest page")
    texts = alice.messages()
    assert "old message 34" in texts[-1] and not any(t == "old message 0" for t in texts), texts[:3]
    alice.wait(lambda: alice.find("#load-older").is_displayed(), "a way to load older messages")
    alice.js("document.getElementById('messages').scrollTop = 0")
    alice.wait(lambda: any("old message 0" in t for t in alice.messages()), "the older page")
    seqs = [int(s) for s in alice.js("return [...document.querySelectorAll('#message-list li[data-seq]')].map(l => l.dataset.seq)")]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 35, seqs
    alice.wait(lambda: not alice.find("#load-older").is_displayed(), "no more to load")


def test_phone_width_and_keyboard(browsers):
    from selenium.webdriver.common.keys import Keys

    alice_id, bob_id = unique("alice"), unique("bob")
    alice = Browser(alice_id, gateway=1, name="alice")
    browsers.append(alice)
    alice.driver.set_window_size(390, 844)
    # Keyboard only: the new-conversation field, Enter submits; Enter in the composer sends.
    field = alice.find("#new-members")
    field.send_keys(bob_id, Keys.ENTER)
    alice.wait_text("#chat-title", bob_id)
    assert not alice.find(".sidebar").is_displayed(), "at phone width the chat replaces the list"
    assert alice.find("#back").is_displayed()
    alice.wait(lambda: alice.js("return document.activeElement.id") == "compose", "the focus in the composer")
    alice.driver.switch_to.active_element.send_keys("sent with Enter", Keys.ENTER)
    alice.wait(lambda: alice.finds("#message-list li[data-seq]") and "sent with Enter" in alice.messages()[-1], "sent")
    width = alice.js("return document.documentElement.scrollWidth")
    assert width <= 390, f"no horizontal scrolling at phone width ({width}px)"
    alice.find("#back").click()
    alice.wait(lambda: alice.find(".sidebar").is_displayed(), "back to the list")
    # Every control has an accessible name.
    unnamed = alice.js("""return [...document.querySelectorAll('button, input, textarea')].filter(e => {
        if (e.offsetParent === null) return false;
        const label = e.labels && e.labels.length ? e.labels[0].textContent.trim() : '';
        return !(label || e.getAttribute('aria-label') || e.textContent.trim());
      }).map(e => e.id || e.outerHTML.slice(0, 60))""")
    assert not unnamed, f"controls without a name: {unnamed}"
