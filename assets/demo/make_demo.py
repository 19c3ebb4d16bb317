"""Writes the bundled demo dataset: a synthetic 24 kHz reference voice and JSONL records in the seed
format. The audio_codes are synthetic (a learnable pattern), not the output of the 12 Hz codec: the demo
exercises the pipeline, it does not teach a real voice. Run: python3 make_demo.py"""
import json, math, random, struct, wave

SR = 24000

def voice(path, seconds, f0):
    # A vowel-like buzz: harmonics of f0 shaped by three formants, with a slow vibrato and an envelope.
    n = int(SR * seconds)
    formants = [(700, 130), (1220, 70), (2600, 160)]
    frames = bytearray()
    phase = 0.0
    for i in range(n):
        t = i / SR
        f = f0 * (1 + 0.01 * math.sin(2 * math.pi * 5 * t))
        phase += 2 * math.pi * f / SR
        s = 0.0
        for h in range(1, 30):
            fh = h * f
            gain = sum(1.0 / (1 + ((fh - fc) / bw) ** 2) for fc, bw in formants)
            s += gain * math.sin(h * phase) / h
        env = min(1.0, t / 0.05, (seconds - t) / 0.05)
        frames += struct.pack('<h', int(max(-1, min(1, 0.25 * s * env)) * 32767))
    with wave.open(path, 'wb') as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(SR); w.writeframes(bytes(frames))

TEXTS = [
    "Sannu da zuwa.", "Ina kwana?", "Lafiya lau.", "Na gode sosai.", "Yaya aiki?", "Barka da safiya.",
    "Ruwa yana da kyau.", "Gobe za mu tafi kasuwa.", "Yara suna wasa a waje.", "Malam yana karatu.",
    "Ina son shinkafa da wake.", "Rana ta fito da wuri.", "Mota ta tsaya a hanya.", "Kakar mu tana dafa abinci.",
    "Littafin yana kan tebur.", "Sai an jima.", "Allah ya kiyaye.", "Muna farin ciki yau.", "Ku zo mu tafi.", "Dare ya yi.",
]

def codes(index, frames):
    rng = random.Random(index)
    base = rng.randrange(2048)
    return [[(base + 37 * k + 101 * q + (k * q) % 7) % 2048 for q in range(16)] for k in range(frames)]

voice("ref_voice.wav", 2.0, 140)
records = []
for i, text in enumerate(TEXTS):
    frames = 12 + 2 * len(text.split()) + i % 5
    records.append({"audio": f"clip_{i:02d}.wav", "text": text, "audio_codes": codes(i, frames),
                    "ref_audio": "ref_voice.wav", "language": "hausa", "speaker_id": "demo_speaker"})
with open("train.jsonl", "w") as f:
    for r in records[:16]:
        f.write(json.dumps(r) + "\n")
with open("validation.jsonl", "w") as f:
    for r in records[16:]:
        f.write(json.dumps(r) + "\n")
