"""A voice message recorded with Chromium's fake microphone, and a 1:1 call through coturn."""

import time

from harness import Browser, unique


def pair(browsers):
    alice_id, bob_id = unique("alice"), unique("bob")
    alice = Browser(alice_id, gateway=1, name="alice")
    browsers.append(alice)
    bob = Browser(bob_id, gateway=2, name="bob")
    browsers.append(bob)
    alice.find("#new-members").send_keys(bob_id)
    alice.find("#new-conv button[type=submit]").click()
    alice.wait_text("#chat-title", bob_id)
    alice.send("hi")
    bob.open_conversation(alice_id)
    bob.wait(lambda: "hi" in " ".join(bob.messages()), "the first message")
    return alice, bob


def test_voice_message_uploads_shows_duration_and_plays(browsers):
    alice, bob = pair(browsers)
    alice.find("#record").click()
    alice.wait(lambda: alice.find("#record").get_attribute("aria-pressed") == "true", "recording")
    time.sleep(2.5)
    alice.find("#record").click()
    # The progress bar shows while the upload runs; the message then appears for both.
    alice.wait(lambda: alice.finds("#message-list li.mine .voice") and alice.finds("#message-list li.mine[data-seq] .voice"),
               "Alice's voice message stored")
    bob.wait(lambda: bob.finds("#message-list li .voice .duration"), "Bob sees the voice message")
    duration = bob.wait(lambda: bob.text("#message-list li:last-child .voice .duration"), "its duration")
    minutes, seconds = duration.split(":")
    assert int(minutes) == 0 and 2 <= int(seconds) <= 4, f"about 2.5 s recorded, shown {duration}"
    bob.wait(lambda: bob.js("return !!document.querySelector('#message-list li:last-child audio').src"), "a playable URL")
    bob.js("const a = document.querySelector('#message-list li:last-child audio'); a.muted = true; a.play();")
    bob.wait(lambda: bob.js("return document.querySelector('#message-list li:last-child audio').currentTime") > 0.3,
             "the voice message plays")


def test_call_connects_and_completes(browsers):
    alice, bob = pair(browsers)
    # Relay only: the media must go through coturn with the credentials the server minted.
    for b in (alice, bob):
        b.js("localStorage.setItem('aiim.iceTransportPolicy', 'relay')")
    alice.find("#call-audio").click()
    bob.wait(lambda: bob.find("#call-accept").is_displayed(), "Bob's phone rings")
    alice.wait_text("#call-status", "Ringing")
    bob.find("#call-accept").click()
    for b in (alice, bob):
        b.wait(lambda b=b: b.js("return document.body.dataset.callStatus") == "answered", "answered")
        b.wait(lambda b=b: b.js("return document.body.dataset.rtc") == "connected", "WebRTC connected", timeout=30)
    alice.find("#call-hangup").click()
    for b in (alice, bob):
        b.wait(lambda b=b: b.js("return document.body.dataset.callStatus") == "completed", "completed")
    bob.wait_text("#message-list li.system", "Audio call ended")


def test_video_call_shows_the_other_camera(browsers):
    alice, bob = pair(browsers)
    alice.find("#call-video").click()
    bob.wait(lambda: bob.find("#call-accept").is_displayed(), "Bob's phone rings")
    bob.find("#call-accept").click()
    for b in (alice, bob):
        b.wait(lambda b=b: b.js("return document.body.dataset.rtc") == "connected", "WebRTC connected", timeout=30)
        # Chromium's fake camera reaches the other side as a playing video.
        b.wait(lambda b=b: b.js("return document.getElementById('remote-video').videoWidth") > 0, "the remote video")
        assert b.find("#local-video").is_displayed()
    bob.find("#call-hangup").click()
    for b in (alice, bob):
        b.wait(lambda b=b: b.js("return document.body.dataset.callStatus") == "completed", "completed")
    alice.wait_text("#message-list li.system", "Video call ended")
