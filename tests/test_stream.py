"""`cadenza stream` as a subprocess, heard by a real JACK MIDI listener in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import wave

import mido
import numpy as np
import pytest

from streamer.midi_input import PolledMidiInput
from conftest import (FLOOR_LOST_LIMIT, JACK_BACKEND, REPO, cadenza_command, delivery_floor, pitch_entropy, run_cadenza,
                      wait_for_port)


from streaming import controlled_stream, send_control, unreleased_in_take, wait_for_program


def _notes_after_control(listener, control_out, message, count):
    send_control(control_out, message)
    time.sleep(0.5)  # past the lookahead: what follows was sampled after the change
    return listener.wait_for_notes(count, since=time.monotonic())


def test_cc1_moves_temperature_and_program_change_switches_instrument(jack_midi):
    with controlled_stream(jack_midi, "controlled", "--seed", "3", "--tempo-scale", "0.3") as (process, listener, control_out):
        cold = _notes_after_control(listener, control_out, mido.Message("control_change", control=1, value=0), 80)
        hot = _notes_after_control(listener, control_out, mido.Message("control_change", control=1, value=127), 80)
        send_control(control_out, mido.Message("program_change", program=40))
        wait_for_program(listener, process, 40)
    cold_entropy = pitch_entropy([m.note for m in cold])
    hot_entropy = pitch_entropy([m.note for m in hot])
    assert cold_entropy + 1.0 < hot_entropy, (cold_entropy, hot_entropy)


def _wav(path):
    with wave.open(str(path)) as handle:
        frames = handle.readframes(handle.getnframes())
        return handle.getframerate(), np.frombuffer(frames, np.int16).reshape(-1, handle.getnchannels())


def test_fluidsynth_file_driver_writes_live_audio_of_the_right_length(tmp_path):
    wav = tmp_path / "live.wav"
    result = run_cadenza("stream", "--fluidsynth", "--audio-driver", "file", "--wav", str(wav), "--seconds", "3",
                         "--no-keys", "--seed", "2")
    assert result.returncode == 0, result.stderr
    rate, samples = _wav(wav)
    assert rate == 44100
    assert 2.5 <= len(samples) / rate <= 4.5
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 100


def test_fluidsynth_through_jack_reaches_a_recording_client(jack_server, tmp_path):
    wav = tmp_path / "jack.wav"
    process = subprocess.Popen(cadenza_command("stream", "--audio-driver", "jack", "--seconds", "8", "--no-keys"),
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while "fluidsynth:left" not in subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "FluidSynth never appeared in JACK"
            time.sleep(0.1)
        time.sleep(0.5)
        subprocess.run(["jack_rec", "-f", str(wav), "-d", "2", "-b", "16", "fluidsynth:left", "fluidsynth:right"],
                       check=True, capture_output=True, timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
    _, samples = _wav(wav)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 100


@pytest.mark.parametrize("arguments, message", [
    (["--temperature", "0"], "temperature"),
    (["--temperature", "nan"], "temperature"),
    (["--tempo-scale", "1e-6"], "tempo-scale"),
    (["--tempo-scale", "inf"], "tempo-scale"),
    (["--lookahead", "1e9"], "lookahead"),
    (["--seed", "-1"], "seed"),
    (["--density", "1e9"], "density"),
    (["--key", "Q minor"], "cannot read key"),
    (["--instrument", "Violn"], "Violin"),
    (["--model", "/nonexistent/model"], "model folder not found"),
])
def test_bad_stream_input_is_a_one_line_error(arguments, message):
    result = run_cadenza("stream", "--no-keys", "--seconds", "1", "--audio-driver", "file", *arguments)
    assert result.returncode == 2
    assert message in result.stderr


def test_unreadable_primer_is_a_one_line_error(tmp_path):
    primer = tmp_path / "broken.mid"
    primer.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x01\x00\x00\x90")
    result = run_cadenza("stream", "--no-keys", "--seconds", "1", "--primer", str(primer))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("cadenza: error: primer")


def test_connect_to_a_missing_port_is_a_one_line_error(jack_midi):
    env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
    result = subprocess.run(cadenza_command("stream", "--midi-api", "jack", "--connect", "no-such-port", "--no-keys"),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("cadenza: error: no MIDI output port named 'no-such-port'")


def _onset_rate(messages: list) -> float:
    """Notes per second from arrival times (monotonic seconds, note-on)."""
    times = [t for t, m in messages]
    return (len(times) - 1) / (times[-1] - times[0])


def test_key_stream_plays_in_the_scale_and_density_cc_changes_the_rate(jack_midi):
    """The rate is measured from the first note generated after the CC: one lookahead (0.2 s) on."""
    from models.controls import parse_key, scale_mask

    with controlled_stream(jack_midi, "steered", "--seed", "5", "--key", "D minor") as (_, listener, control_out):
        # 120 notes: over 60 a stream's share in the scale spreads so widely (10th percentile 0.74
        # over 64 seeds) that one seed's figure says little; over 160 the 10th percentile is 0.83.
        notes = listener.wait_for_notes(120)
        rates = {}
        gaps = {}
        # Six seconds of each: over 12 notes a chord or two (every note counts) swung the rate by 2x.
        for density, value, count in ((4, 56, 24), (16, 111, 96)):  # CC71: 1-127 onto 1-24 notes/s, log scale
            send_control(control_out, mido.Message("control_change", control=71, value=value))
            since = time.monotonic() + 0.25
            listener.wait_for_notes(count, since=since, timeout=60)
            arrivals = [(t, m) for t, m in listener.messages if t >= since and m.type == "note_on" and m.velocity > 0]
            rates[density] = _onset_rate(arrivals[:count])
            gaps[density] = np.round(np.diff([t for t, _ in arrivals[:count]]), 3).tolist()
    in_scale = np.mean(scale_mask(parse_key("D minor"))[np.array([m.note for m in notes]) % 12])
    assert in_scale > 0.8, in_scale
    assert 4 / 1.5 < rates[4] < 4 * 1.5 and 16 / 1.5 < rates[16] < 16 * 1.5, (rates, gaps)


def test_malformed_control_messages_are_skipped_and_control_survives(jack_midi):
    import rtmidi

    with controlled_stream(jack_midi, "robust", "--seed", "3", "--tempo-scale", "0.5") as (process, listener, control_out):
        raw = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="raw-sender")
        raw.open_port(raw.get_ports().index(control_out.name))
        # (Not an unterminated SysEx: rtmidi itself swallows what follows one until an F7.)
        for data in ([0xF2, 0x01], [0xB0], [0x90, 0x3C], [0xF8, 0x01, 0x02]):
            raw.send_message(data)
        time.sleep(0.3)
        send_control(control_out, mido.Message("program_change", program=40))
        wait_for_program(listener, process, 40)  # control still works after the malformed messages
        raw.close_port()
    assert "skipped a MIDI message" in process.stderr.read()


def test_a_second_instance_says_its_port_name_is_taken(jack_midi):
    env = dict(os.environ, MIDO_BACKEND=JACK_BACKEND)
    command = cadenza_command("stream", "--port", "twin", "--seconds", "4", "--no-keys")
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(jack_midi.get_input_names, ":twin")
        second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    finally:
        first_err = first.communicate(timeout=60)[1]
    assert first.returncode == 0 and "already open" not in first_err, first_err
    assert second.returncode == 0, second.stderr
    assert "a port named 'twin' was already open" in second.stderr, second.stderr
    assert "virtual port 'twin'" not in second.stderr  # it names the port the DAW sees, not the one asked for
    # and so for its control input (it said 'cadenza-control' while JACK had renamed it)
    assert "a control input named 'cadenza-control' was already open" in second.stderr, second.stderr
    assert "virtual port 'cadenza-control'" not in second.stderr, second.stderr


def test_ports_are_listed_on_jack_without_opening_a_client(jack_midi, monkeypatch):
    """mido lists ports through a new rtmidi client, which JACK activates and closes; around a
    stream's start-up that left its control input never run by the server in 5 of 27 streams.
    cadenza's backend lists the same ports without one."""
    import rtmidi

    plain = mido.Backend(JACK_BACKEND, load=True)
    sending = plain.open_output("listed-out", virtual=True, client_name="lister")
    reading = plain.open_input("listed-in", virtual=True, client_name="lister-in")
    try:
        outputs, inputs = plain.get_output_names(), plain.get_input_names()

        def refuse(*args, **kwargs):
            raise AssertionError("a JACK client was opened to list ports")

        monkeypatch.setattr(rtmidi, "MidiOut", refuse)
        monkeypatch.setattr(rtmidi, "MidiIn", refuse)
        assert "lister-in:listed-in" in outputs and "lister:listed-out" in inputs
        assert sorted(jack_midi.get_output_names()) == sorted(outputs)
        assert sorted(jack_midi.get_input_names()) == sorted(inputs)
    finally:
        monkeypatch.undo()
        sending.close()
        reading.close()


def test_a_stuck_key_on_the_control_input_does_not_pause_the_stream_forever(jack_midi):
    with controlled_stream(jack_midi, "stuck", "--seed", "2", "--max-note-seconds", "1") as (_, listener, control_out):
        control_out.send(mido.Message("note_on", note=60, velocity=90))  # and never a note-off
        time.sleep(0.5)
        paused_at = time.monotonic()
        listener.wait_for_notes(5, since=paused_at + 0.2, timeout=8)  # cap 1 s + response gap 0.6 s
        control_out.send(mido.Message("note_on", note=62, velocity=90))
        time.sleep(0.2)
        send_control(control_out, mido.Message("control_change", control=123, value=0))  # clears held keys at once
        cleared_at = time.monotonic()
        listener.wait_for_notes(3, since=cleared_at + 0.1, timeout=4)


def test_unwritable_record_is_refused_before_the_stream_starts(tmp_path):
    wav = tmp_path / "never.wav"
    result = run_cadenza("stream", "--no-keys", "--seconds", "1", "--audio-driver", "file", "--wav", str(wav),
                         "--record", str(tmp_path / "missing-folder" / "take.mid"))
    assert result.returncode == 2 and "cannot write --record" in result.stderr
    assert not wav.exists()


def _ticks(path) -> tuple[list, list, list]:
    """(set_tempo (tick, bpm) pairs, note-on ticks, other channel messages) of a one-track take."""
    tick, tempos, onsets, others = 0, [], [], []
    for message in mido.MidiFile(str(path)).tracks[0]:
        tick += message.time
        if message.type == "set_tempo":
            tempos.append((tick, mido.tempo2bpm(message.tempo)))
        elif message.type == "note_on" and message.velocity > 0:
            onsets.append(tick)
        elif not message.is_meta and message.type not in ("note_on", "note_off"):
            others.append(message)
    return tempos, onsets, others


def test_a_take_in_musical_time_carries_the_tempo_and_sits_on_its_own_grid(tmp_path):
    """Issue 20: with --bpm 96 --quantize 1/16 the take said 120 BPM and its onsets fell off its grid."""
    take = tmp_path / "take.mid"
    # Four seconds from a fixed seed: three seconds of a stream that opened on a held chord once
    # came to 10 notes, the least this check reads a grid from.
    result = run_cadenza("stream", "--no-keys", "--seconds", "4", "--seed", "3", "--bpm", "96", "--quantize", "1/16",
                         "--audio-driver", "file", "--wav", str(tmp_path / "t.wav"), "--record", str(take))
    assert result.returncode == 0, result.stderr
    tempos, onsets, others = _ticks(take)
    assert [bpm for _, bpm in tempos] == [pytest.approx(96.0)]
    ticks_per_sixteenth = mido.MidiFile(str(take)).ticks_per_beat // 4
    assert len(onsets) > 10 and onsets[0] == 0, onsets[:5]  # the first note on the downbeat
    assert all(tick % ticks_per_sixteenth == 0 for tick in onsets), [t for t in onsets if t % ticks_per_sixteenth][:5]
    assert not [m for m in others if m.type == "control_change"], others[:5]  # no all-notes-off at the end


def test_a_take_whose_folder_vanished_is_saved_to_a_fallback(tmp_path):
    from streamer.recording import RecordOutput

    folder = tmp_path / "takes"
    folder.mkdir()
    recorder = RecordOutput(folder / "take.mid")
    recorder.send(mido.Message("note_on", note=60, velocity=80))
    recorder.send(mido.Message("note_off", note=60))
    folder.rmdir()
    recorder.close()
    assert recorder.failure and str(recorder.path) in recorder.failure
    try:
        notes = [m for m in mido.MidiFile(str(recorder.path)) if m.type == "note_on"]
        assert notes[0].note == 60
    finally:
        recorder.path.unlink()


def test_a_note_silenced_just_after_it_went_out_early_is_ended_in_the_take(tmp_path):
    """Notes go out half a JACK period before their time and are recorded at that time; a stop
    (kill -9 of the engine: the stop loop left one note on in a take) silences them at once."""
    from streamer.recording import RecordOutput
    from streamer.scheduler import Scheduler

    recorder = RecordOutput(tmp_path / "t.mid")
    scheduler = Scheduler([recorder], early_seconds=0.005)
    scheduler.schedule_note(time.monotonic() + 0.004, time.monotonic() + 1.0, 0, 60, 80)
    scheduler.send_due()  # out early: its time is still to come
    scheduler.silence_now()
    recorder.close()
    assert unreleased_in_take(recorder.path) == 0


def test_notes_held_back_by_a_suspension_are_dropped_not_burst(tmp_path):
    from streamer.recording import RecordOutput
    from streamer.scheduler import Scheduler

    recorder = RecordOutput(tmp_path / "t.mid")
    scheduler = Scheduler([recorder])
    now = time.monotonic()
    for offset in range(10):  # due a second ago: as if the process was stopped (Ctrl-Z) and resumed
        scheduler.schedule_note(now - 1.0 + 0.01 * offset, now - 0.5, 0, 60 + offset, 80)
    scheduler.schedule_note(now, now + 0.01, 0, 72, 90)
    time.sleep(0.02)
    scheduler.send_due()
    sent = [m for _, m in recorder.events if m.type == "note_on"]
    assert [m.note for m in sent] == [72] and scheduler.notes_dropped == 10 and scheduler.notes_played == 1


def test_calibrate_measures_a_loopback_delay(jack_midi):
    """A loopback that echoes its input 25 ms later: calibrate reports about 25 ms."""
    import queue
    import threading

    import rtmidi

    from streamer.realtime import SENDER_PRIORITY, realtime_library_threads, request_realtime_priority

    with realtime_library_threads():
        echo_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="loopout")
        echo_out.open_virtual_port("loop-out")
    due = queue.Queue()  # (when, bytes): echoes are due in the order their notes came

    def send_echoes():
        # A DAW's MIDI thru runs real-time; an ordinary thread here woke tens of ms late on a busy machine.
        request_realtime_priority(SENDER_PRIORITY)
        while (item := due.get()) is not None:
            time.sleep(max(item[0] - time.monotonic(), 0))
            echo_out.send_message(item[1])

    sender = threading.Thread(target=send_echoes, daemon=True)
    sender.start()
    echo_in = PolledMidiInput(jack_midi, "loop-in", lambda message, arrival: due.put((arrival + 0.025, message.bytes())),
                              virtual=True, client_name="loopin", poll_seconds=0.0005)
    try:
        result = subprocess.run(cadenza_command("calibrate", "--midi-api", "jack", "--port", "loopin:loop-in",
                                                "--input", "loopout:loop-out", "--count", "12"),
                                cwd=REPO, capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, MIDO_BACKEND=JACK_BACKEND))
    finally:
        echo_in.close()
        due.put(None)
        sender.join(timeout=5)
        echo_out.close_port()
    assert result.returncode == 0, result.stderr
    if not result.stdout.startswith("12 of 12"):
        # A clean-clone run on a degraded host had 11 of 12 back while a bare sender on the same
        # kind of server lost 14 of 300: then the host is to blame, and it is checked so here.
        floor = delivery_floor()
        if floor["lost"] > FLOOR_LOST_LIMIT:
            pytest.skip(f"this host's JACK server loses MIDI: {floor['lost']} of 300 from a bare sender ({result.stdout.strip()})")
    median = float(result.stdout.split("delay median ")[1].split(" ms")[0])
    assert 22 <= median <= 34, result.stdout  # 25 ms, give or take one of the suite's JACK periods (5.8 ms)
    assert "--latency-ms" in result.stdout and result.stdout.startswith("12 of 12")
