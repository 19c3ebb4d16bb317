using Qwen3Tts.Model.Audio;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Audio;

/// <summary>The FLAC decoder against two independent encoders (the reference libFLAC <c>flac</c> and ffmpeg's own
/// encoder): sox writes a WAV, an encoder turns it into FLAC, and the decoded integers must equal the WAV's exactly, and
/// the floats equal ffmpeg's decode of the same FLAC. <c>flac --analyze</c> lists what the corpus exercises (every
/// subframe type, all four channel assignments, 4- and 5-bit Rice parameters, wasted bits). Escaped residual partitions
/// and variable block sizes, which neither encoder writes, are checked on a stream built bit by bit here. Damaged files
/// fail naming the file and the fault.</summary>
public class FlacDecoderTests(ITestOutputHelper output) : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("flac");

    const string Tones = "synth 1.5 sine 440 sine 660 vol 0.5"; // left 440 Hz, right 660 Hz; sox dithers when it writes 16 bits

    /// <summary>name, sox output options and effects for the source WAV, the encoder (flac or ffmpeg) and its options.</summary>
    public static TheoryData<string, string, string, string> Corpus() => new()
    {
        { "s16-level0", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "-0" },
        { "s16-level5", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "-5" },
        { "s16-level8", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "-8" },
        { "s16-silence", $"-D -r 44100 -c 2 -b 16|{Tones} pad 0.3 0.3", "flac", "-8" },  // silent blocks: CONSTANT
        { "s16-noise", "-r 44100 -c 2 -b 16|synth 0.5 whitenoise vol 0.9", "flac", "-5" }, // incompressible: VERBATIM
        { "s24-exhaustive", $"-r 48000 -c 2 -b 24|{Tones}", "flac", "-8 -e -p" },
        { "s24-wasted-bits", $"-r 44100 -c 2 -b 16|{Tones}|-b 24", "flac", "-5" }, // 16-bit content in 24 bits: 8 wasted bits
        { "s32", $"-r 48000 -c 2 -b 32|{Tones}", "flac", "-5" },
        { "u8-mono-8k", "-r 8000 -c 1 -b 8|synth 0.7 sine 440 vol 0.5", "flac", "-5" },
        { "s16-6ch", "-r 22050 -c 6 -b 16|synth 0.5 sine 200 sine 300 sine 400 sine 500 sine 600 sine 700 vol 0.3", "flac", "-5" },
        { "s16-mono-11025", "-r 11025 -c 1 -b 16|synth 0.5 sine 440 vol 0.5", "flac", "-5" },   // rate coded in the frame header in Hz
        { "s16-37800", "-r 37800 -c 2 -b 16|synth 0.5 sine 440 sine 550 vol 0.5", "flac", "-5" }, // rate coded in tens of Hz
        { "s16-block192", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "-5 -b 192" },  // block size code 1; frame numbers past 127 take 2 bytes
        { "s16-block200", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "--lax -5 -b 200" }, // block size in 8 bits after the header
        { "s16-block1000-lpc32", $"-r 44100 -c 2 -b 16|{Tones}", "flac", "--lax -b 1000 -l 32 -r 8" }, // 16-bit block size, order 32
        { "ffmpeg-independent", $"-r 44100 -c 2 -b 16|{Tones}", "ffmpeg", "-ch_mode 0" },
        { "ffmpeg-left-side", $"-r 44100 -c 2 -b 16|{Tones}", "ffmpeg", "-ch_mode 1" },
        { "ffmpeg-right-side", $"-r 44100 -c 2 -b 16|{Tones}", "ffmpeg", "-ch_mode 2" },
        { "ffmpeg-mid-side", $"-r 44100 -c 2 -b 16|{Tones}", "ffmpeg", "-ch_mode 3" },
        { "ffmpeg-s24", $"-r 48000 -c 2 -b 24|{Tones}", "ffmpeg", "-sample_fmt s32 -compression_level 12" },
        { "ffmpeg-fixed", $"-r 44100 -c 2 -b 16|{Tones}", "ffmpeg", "-lpc_type fixed" },
    };

    /// <summary>Writes the case's source WAV with sox and encodes it; returns both paths.</summary>
    (string Wav, string Flac) Make(string name, string source, string encoder, string options)
    {
        var parts = source.Split('|');
        string wav = Path.Combine(dir, name + ".wav"), flac = Path.Combine(dir, name + ".flac");
        AudioTools.Run("sox", ["-n", .. parts[0].Split(' '), wav, .. parts[1].Split(' ')]);
        if (parts.Length > 2)
        {
            string widened = Path.Combine(dir, name + ".wide.wav");
            AudioTools.Run("sox", [wav, .. parts[2].Split(' '), widened]);
            wav = widened;
        }
        if (encoder == "flac") AudioTools.Run("flac", ["-s", "-f", .. options.Split(' '), wav, "-o", flac]);
        else AudioTools.Run("ffmpeg", ["-v", "error", "-y", "-i", wav, "-c:a", "flac", .. options.Split(' '), flac]);
        return (wav, flac);
    }

    [Theory]
    [MemberData(nameof(Corpus))]
    public void Decodes_exactly_what_the_encoder_was_given(string name, string source, string encoder, string options)
    {
        if (!AudioTools.Have(output, "sox", encoder, "ffmpeg")) return;
        var (wav, flac) = Make(name, source, encoder, options);

        var (rate, bits, expected) = AudioTools.PcmInts(wav);
        var decoded = FlacDecoder.Decode(File.ReadAllBytes(flac), flac);
        Assert.Equal(rate, decoded.SampleRate);
        Assert.Equal(bits, decoded.BitsPerSample);
        Assert.Equal(expected.Length, decoded.Channels.Length);
        for (int c = 0; c < expected.Length; c++)
            Assert.True(expected[c].AsSpan().SequenceEqual(decoded.Channels[c]), $"{name}: channel {c} differs from the source WAV");

        // The floats AudioFile hands on are ffmpeg's own decode of the same file, scaled by 2^(bits - 1), exactly.
        // ffmpeg 5.1 (Debian 12) cannot decode 32-bit FLAC (it prints nothing); the integers above cover that case.
        var channels = AudioFile.ReadChannels(flac);
        Assert.Equal(AudioFormat.Flac, channels.Format);
        if (bits == 32) return;
        var ffmpeg = AudioTools.FfmpegDecode(flac, expected.Length);
        for (int c = 0; c < expected.Length; c++)
        {
            Assert.Equal(ffmpeg[c].Length, channels.Channels[c].Length);
            float worst = 0;
            for (int i = 0; i < ffmpeg[c].Length; i++) worst = Math.Max(worst, Math.Abs(ffmpeg[c][i] - channels.Channels[c][i]));
            Assert.True(worst == 0, $"{name}: channel {c} differs from ffmpeg's decode by up to {worst}");
        }
    }

    [Fact]
    public void The_corpus_exercises_every_subframe_type_and_channel_assignment()
    {
        if (!AudioTools.Have(output, "sox", "flac", "ffmpeg")) return;
        var seen = new SortedSet<string>();
        foreach (var row in Corpus())
        {
            var (_, flac) = Make((string)row[0], (string)row[1], (string)row[2], (string)row[3]);
            AudioTools.Run("flac", ["-s", "-f", "-a", flac, "-o", flac + ".ana"]);
            foreach (var line in File.ReadLines(flac + ".ana"))
                foreach (var field in line.Split('\t'))
                    if (field.StartsWith("type=") || field.StartsWith("channel_assignment=") || field.StartsWith("residual_type="))
                        seen.Add(field);
                    else if (field.StartsWith("wasted_bits=") && field != "wasted_bits=0")
                        seen.Add("wasted_bits>0");
        }
        output.WriteLine(string.Join(", ", seen));
        string[] needed =
        [
            "type=CONSTANT", "type=VERBATIM", "type=FIXED", "type=LPC", "residual_type=RICE", "residual_type=RICE2", "wasted_bits>0",
            "channel_assignment=INDEPENDENT", "channel_assignment=LEFT_SIDE", "channel_assignment=RIGHT_SIDE", "channel_assignment=MID_SIDE",
        ];
        Assert.Empty(needed.Except(seen));
    }

    // ---- A stream built bit by bit: the parts encoders do not write ----

    sealed class BitWriter
    {
        readonly List<byte> bytes = [];
        int acc, n;

        public void Bits(long value, int count)
        {
            for (int i = count - 1; i >= 0; i--)
            {
                acc = acc << 1 | (int)(value >> i & 1);
                if (++n == 8) { bytes.Add((byte)acc); acc = 0; n = 0; }
            }
        }

        public void Unary(int zeros) { Bits(0, zeros); Bits(1, 1); }

        public void Rice(long v, int k)
        {
            long u = v >= 0 ? 2 * v : -2 * v - 1;
            Unary((int)(u >> k));
            Bits(u & ((1L << k) - 1), k);
        }

        public void Align() { while (n != 0) Bits(0, 1); }

        public List<byte> Bytes => bytes;
    }

    // Bitwise CRCs, written from the polynomials, independent of the decoder's table.
    static int Crc(IEnumerable<byte> data, int width, int poly)
    {
        int crc = 0, top = 1 << (width - 1), mask = (1 << width) - 1;
        foreach (byte b in data)
            for (int i = 7; i >= 0; i--)
            {
                bool bit = ((b >> i & 1) == 1) ^ ((crc & top) != 0);
                crc = (crc << 1 & mask) ^ (bit ? poly : 0);
            }
        return crc;
    }

    /// <summary>One frame of 2 channels at 16 bits with a given block size. <paramref name="subframes"/> writes both
    /// subframes; the header uses the variable-block-size strategy with a sample number, block size code 7.</summary>
    static byte[] Frame(long firstSample, int blockSize, int channelCode, Action<BitWriter> subframes)
    {
        var w = new BitWriter();
        w.Bits(0x3FFE, 14); w.Bits(0, 1); w.Bits(1, 1); // sync, reserved, variable block size
        w.Bits(7, 4);      // block size - 1 in 16 bits after the coded number
        w.Bits(0, 4);      // sample rate from STREAMINFO
        w.Bits(channelCode, 4);
        w.Bits(4, 3);      // 16 bits per sample
        w.Bits(0, 1);
        // Sample number in the UTF-8-like coding: 2 bytes for values below 2^11.
        if (firstSample < 0x80) w.Bits(firstSample, 8);
        else { w.Bits(0xC0 | firstSample >> 6, 8); w.Bits(0x80 | (firstSample & 0x3F), 8); }
        w.Bits(blockSize - 1, 16);
        w.Bits(Crc(w.Bytes, 8, 0x07), 8);
        subframes(w);
        w.Align();
        w.Bits(Crc(w.Bytes, 16, 0x8005), 16);
        return [.. w.Bytes];
    }

    static byte[] Stream(int totalSamples, params byte[][] frames)
    {
        var w = new BitWriter();
        foreach (char c in "fLaC") w.Bits(c, 8);
        w.Bits(0x80, 8); w.Bits(34, 24);               // last metadata block, STREAMINFO, 34 bytes
        w.Bits(16, 16); w.Bits(4096, 16);               // block sizes
        w.Bits(0, 24); w.Bits(0, 24);                   // frame sizes unknown
        w.Bits(16000, 20); w.Bits(1, 3); w.Bits(15, 5); // 16 kHz, 2 channels, 16 bits
        w.Bits(totalSamples, 36);
        w.Bits(0, 64); w.Bits(0, 64);                   // no MD5
        return [.. w.Bytes, .. frames.SelectMany(f => f)];
    }

    [Fact]
    public void Escaped_partitions_rice2_wasted_bits_and_variable_blocks_decode_as_built()
    {
        // Frame 0: 16 samples, mid/side. Mid: FIXED order 2, 4-bit Rice parameters, partition order 2 (4 partitions of
        // 4 samples): a Rice partition, an escaped partition of width 0 (all residuals zero), an escaped partition of
        // 18-bit raw residuals, a Rice partition with parameter 14. Side (17 bits): 1 wasted bit, LPC order 1 with
        // 5-bit Rice parameters.
        long[] mid = [1000, 1010, 1023, 1032, 1041, 1050, 1059, 1068, 30000, -30000, 30000, -30000, 5, 7, 0, -3];
        long[] side = Enumerable.Range(0, 16).Select(i => 2L * (i % 2 == 0 ? 7 * i : -5 * i)).ToArray(); // all even
        long[] residual = new long[16];
        for (int i = 2; i < 16; i++) residual[i] = mid[i] - (2 * mid[i - 1] - mid[i - 2]);
        Assert.All(residual[4..8], r => Assert.Equal(0, r));
        Assert.All(residual[8..12], r => Assert.InRange(r, -(1 << 17), (1 << 17) - 1));
        Assert.Contains(residual[8..12], r => Math.Abs(r) >= 1 << 16); // needs all 18 bits
        // What an encoder would have started from: mid = (L + R) >> 1 and side = L - R.
        long[] left = new long[16], right = new long[16];
        for (int i = 0; i < 16; i++)
        {
            long m2 = mid[i] << 1 | (side[i] & 1);
            left[i] = (m2 + side[i]) >> 1;
            right[i] = (m2 - side[i]) >> 1;
            Assert.Equal(mid[i], (left[i] + right[i]) >> 1);
            Assert.Equal(side[i], left[i] - right[i]);
        }
        Assert.All(left.Concat(right), v => Assert.InRange(v, short.MinValue, short.MaxValue));

        var frame0 = Frame(0, 16, 10, w =>
        {
            w.Bits(0, 1); w.Bits(8 + 2, 6); w.Bits(0, 1);  // FIXED order 2, no wasted bits
            w.Bits(mid[0], 16); w.Bits(mid[1], 16);         // warm-up
            w.Bits(0, 2); w.Bits(2, 4);                      // 4-bit Rice parameters, partition order 2
            w.Bits(1, 4); for (int i = 2; i < 4; i++) w.Rice(residual[i], 1); // the first partition holds 4 - order
            w.Bits(15, 4); w.Bits(0, 5);                     // escaped, width 0
            w.Bits(15, 4); w.Bits(18, 5); for (int i = 8; i < 12; i++) w.Bits(residual[i], 18);
            w.Bits(14, 4); for (int i = 12; i < 16; i++) w.Rice(residual[i], 14);

            w.Bits(0, 1); w.Bits(32 + 0, 6); w.Bits(1, 1); w.Unary(0); // LPC order 1; 1 wasted bit (unary 0 means 1)
            long[] s = side.Select(v => v >> 1).ToArray();   // 17 - 1 = 16 bits
            w.Bits(s[0], 16);
            w.Bits(15 - 1, 4); w.Bits(1, 5); w.Bits(-1, 15); // precision 15, shift 1, coefficient -1
            w.Bits(1, 2); w.Bits(0, 4); w.Bits(20, 5);       // 5-bit Rice parameters, one partition, parameter 20
            for (int i = 1; i < 16; i++) w.Rice(s[i] - (-s[i - 1] >> 1), 20);
        });
        // Frame 1: a short variable block of 3 samples, left/side: CONSTANT left, VERBATIM 17-bit side.
        long[] side1 = [-34000, 31534, 0];
        var frame1 = Frame(16, 3, 8, w =>
        {
            w.Bits(0, 1); w.Bits(0, 6); w.Bits(0, 1); w.Bits(-1234, 16);
            w.Bits(0, 1); w.Bits(1, 6); w.Bits(0, 1); foreach (long v in side1) w.Bits(v, 17);
        });

        string path = Path.Combine(dir, "built.flac");
        File.WriteAllBytes(path, Stream(19, frame0, frame1));
        var audio = FlacDecoder.Decode(File.ReadAllBytes(path), path);

        Assert.Equal(16000, audio.SampleRate);
        Assert.Equal(16, audio.BitsPerSample);
        Assert.Equal([.. left.Select(v => (int)v), -1234, -1234, -1234], audio.Channels[0]);
        Assert.Equal([.. right.Select(v => (int)v), 32766, -32768, -1234], audio.Channels[1]);
    }

    [Fact]
    public void Damaged_streams_fail_naming_the_file_and_the_fault()
    {
        var good = Stream(3, Frame(0, 3, 1, w =>
        {
            w.Bits(0, 1); w.Bits(1, 6); w.Bits(0, 1); foreach (long v in new long[] { 1, 2, 3 }) w.Bits(v, 16);
            w.Bits(0, 1); w.Bits(0, 6); w.Bits(0, 1); w.Bits(-5, 16);
        }));
        Assert.Equal([1, 2, 3], FlacDecoder.Decode(good, "good.flac").Channels[0]);

        void Fails(byte[] bytes, string problem)
        {
            var e = Assert.Throws<AudioException>(() => FlacDecoder.Decode(bytes, "bad.flac"));
            Assert.StartsWith("bad.flac: ", e.Message);
            Assert.Contains(problem, e.Message);
        }
        int frame = 4 + 4 + 34;
        var flipped = (byte[])good.Clone(); flipped[frame + 9] ^= 0x10;    // a sample bit: CRC-16 fails
        Fails(flipped, "frame 0 at byte 42: frame CRC-16");
        var header = (byte[])good.Clone(); header[frame + 3] ^= 0x01;      // the reserved bit after the sample size
        Fails(header, "reserved bit");
        var badCrc8 = (byte[])good.Clone(); badCrc8[frame + 2] ^= 0x01;    // sample rate code 1 (88.2 kHz): CRC-8 fails
        Fails(badCrc8, "header CRC-8");
        Fails(good[..^3], "runs past the end of the file");
        Fails(Stream(4, good[frame..]), "declares 4 samples per channel but the frames hold 3");
        Fails("fLaX"u8.ToArray(), "not a FLAC stream");
        var firstNotInfo = (byte[])good.Clone(); firstNotInfo[4] = 0x84;  // block type 4 (comment) first
        Fails(firstNotInfo, "not STREAMINFO");
    }

    [Fact]
    public void A_wrong_md5_is_reported_as_corruption()
    {
        if (!AudioTools.Have(output, "sox", "flac")) return;
        var (_, flac) = Make("md5", $"-r 16000 -c 1 -b 16|synth 0.3 sine 300 vol 0.5", "flac", "-5");
        var bytes = File.ReadAllBytes(flac);
        FlacDecoder.Decode(bytes, flac); // the untouched file passes its own MD5
        bytes[8 + 18] ^= 0xFF;           // STREAMINFO's MD5 starts 18 bytes into the block
        var e = Assert.Throws<AudioException>(() => FlacDecoder.Decode(bytes, flac));
        Assert.Contains(flac, e.Message);
        Assert.Contains("MD5", e.Message);
    }
}
