using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Qwen3Tts.Model.Audio;

/// <summary>A decoded FLAC stream: per-channel integer samples of <see cref="BitsPerSample"/> bits, as stored.</summary>
public sealed record FlacAudio(int SampleRate, int BitsPerSample, int[][] Channels)
{
    public int Length => Channels[0].Length;

    /// <summary>Channels scaled into [-1, 1) by 2^(bits - 1), as <see cref="WavReader"/> scales integer PCM.</summary>
    public float[][] ToFloat()
    {
        double scale = 1.0 / (1L << (BitsPerSample - 1));
        return Array.ConvertAll(Channels, ch =>
        {
            var f = new float[ch.Length];
            for (int i = 0; i < ch.Length; i++) f[i] = (float)(ch[i] * scale);
            return f;
        });
    }
}

/// <summary>A complete FLAC decoder after RFC 9639, in pure C#: the STREAMINFO block (other metadata blocks are
/// skipped), frames with fixed or variable block size, frame header CRC-8 and frame CRC-16, CONSTANT, VERBATIM, FIXED
/// (orders 0-4) and LPC (orders 1-32) subframes with wasted bits, partitioned Rice residuals with 4- and 5-bit parameters
/// and escaped (raw) partitions, left/side, side/right and mid/side stereo, 1-8 channels, 4-32 bits per sample. The
/// STREAMINFO MD5 of the decoded samples is checked when the encoder stored one. An ID3v2 tag in front of the stream and
/// an ID3v1 tag after it are skipped. Every error names the file and what is wrong, with the byte offset.</summary>
public static class FlacDecoder
{
    public static FlacAudio Decode(ReadOnlySpan<byte> file, string name)
    {
        int pos = SkipId3v2(file);
        if (file.Length - pos < 4 || !file.Slice(pos, 4).SequenceEqual("fLaC"u8))
            throw new AudioException(name, "not a FLAC stream (no 'fLaC' marker)");
        pos += 4;

        // Metadata blocks: a 1-bit last flag, a 7-bit type, a 24-bit length. STREAMINFO (type 0) comes first.
        StreamInfo? info = null;
        for (bool last = false; !last;)
        {
            if (file.Length - pos < 4) throw new AudioException(name, $"truncated metadata block header at byte {pos}");
            byte head = file[pos];
            last = (head & 0x80) != 0;
            int type = head & 0x7F;
            int length = file[pos + 1] << 16 | file[pos + 2] << 8 | file[pos + 3];
            pos += 4;
            if (length > file.Length - pos)
                throw new AudioException(name, $"metadata block of type {type} at byte {pos - 4} declares {length} bytes, only {file.Length - pos} remain");
            if (type == 127) throw new AudioException(name, $"invalid metadata block type 127 at byte {pos - 4}");
            if (info is null && type != 0) throw new AudioException(name, $"the first metadata block is of type {type}, not STREAMINFO (0)");
            if (type == 0)
            {
                if (info is not null) throw new AudioException(name, $"a second STREAMINFO block at byte {pos - 4}");
                info = ParseStreamInfo(file.Slice(pos, length), name);
            }
            pos += length;
        }
        var si = info!.Value;

        var output = new SampleSink(si.Channels, si.TotalSamples);
        using var md5 = si.Md5.ContainsAnyExcept((byte)0) ? IncrementalHash.CreateHash(HashAlgorithmName.MD5) : null;
        var scratch = new long[si.Channels][];
        var residualScratch = new long[0];
        int frameIndex = 0;
        while (pos < file.Length)
        {
            if (si.TotalSamples > 0 && output.Length >= si.TotalSamples) break; // anything after the declared samples is not audio
            if (file.Length - pos == 128 && file.Slice(pos, 3).SequenceEqual("TAG"u8)) break; // an ID3v1 tag
            pos = DecodeFrame(file, pos, si, name, frameIndex, scratch, ref residualScratch, output, md5);
            frameIndex++;
        }

        if (si.TotalSamples > 0 && output.Length != si.TotalSamples)
            throw new AudioException(name, $"STREAMINFO declares {si.TotalSamples} samples per channel but the frames hold {output.Length} (truncated file?)");
        if (md5 is not null)
        {
            var digest = md5.GetHashAndReset();
            if (!digest.AsSpan().SequenceEqual(si.Md5))
                throw new AudioException(name, $"MD5 of the decoded audio ({Convert.ToHexString(digest)}) differs from STREAMINFO's ({Convert.ToHexString(si.Md5)}): the file is corrupt");
        }
        return new FlacAudio(si.SampleRate, si.BitsPerSample, output.ToArrays());
    }

    readonly record struct StreamInfo(int MaxBlockSize, int SampleRate, int Channels, int BitsPerSample, long TotalSamples, byte[] Md5);

    static StreamInfo ParseStreamInfo(ReadOnlySpan<byte> b, string name)
    {
        if (b.Length < 34) throw new AudioException(name, $"STREAMINFO is {b.Length} bytes, needs 34");
        int minBlock = BinaryPrimitives.ReadUInt16BigEndian(b);
        int maxBlock = BinaryPrimitives.ReadUInt16BigEndian(b[2..]);
        // Bytes 10..17: sample rate (20 bits), channels - 1 (3), bits per sample - 1 (5), total samples (36).
        ulong packed = BinaryPrimitives.ReadUInt64BigEndian(b[10..]);
        int rate = (int)(packed >> 44);
        int channels = (int)(packed >> 41 & 0x7) + 1;
        int bits = (int)(packed >> 36 & 0x1F) + 1;
        long total = (long)(packed & 0xF_FFFF_FFFF);
        if (rate == 0) throw new AudioException(name, "STREAMINFO declares a sample rate of 0");
        if (bits < 4) throw new AudioException(name, $"STREAMINFO declares {bits} bits per sample; FLAC needs 4 to 32");
        if (minBlock < 16 && minBlock != maxBlock) throw new AudioException(name, $"STREAMINFO declares a minimum block size of {minBlock}; FLAC needs at least 16");
        if (maxBlock < minBlock) throw new AudioException(name, $"STREAMINFO's maximum block size {maxBlock} is below its minimum {minBlock}");
        return new StreamInfo(maxBlock, rate, channels, bits, total, b.Slice(18, 16).ToArray());
    }

    static int SkipId3v2(ReadOnlySpan<byte> file)
    {
        // "ID3", version (2), flags (1), size as four 7-bit bytes; a footer flag (0x10) adds 10 more bytes.
        if (file.Length < 10 || !file[..3].SequenceEqual("ID3"u8)) return 0;
        int size = (file[6] & 0x7F) << 21 | (file[7] & 0x7F) << 14 | (file[8] & 0x7F) << 7 | (file[9] & 0x7F);
        return (int)Math.Min(file.Length, 10L + size + ((file[5] & 0x10) != 0 ? 10 : 0));
    }

    enum ChannelMode { Independent, LeftSide, SideRight, MidSide }

    /// <summary>Decodes the frame at byte <paramref name="start"/>, appends its samples, and returns the next frame's offset.</summary>
    static int DecodeFrame(ReadOnlySpan<byte> file, int start, StreamInfo si, string name, int frameIndex,
        long[][] scratch, ref long[] residual, SampleSink output, IncrementalHash? md5)
    {
        string where = $"frame {frameIndex} at byte {start}";
        AudioException Bad(string problem) => new(name, $"{where}: {problem}");

        var r = new BitReader(file[start..], name, where);
        // Header: sync (14 bits), reserved (1), blocking strategy (1).
        uint sync = r.Read(14);
        if (sync != 0x3FFE) throw Bad($"expected the frame sync code 0x3FFE, found 0x{sync:X4}");
        if (r.Read(1) != 0) throw Bad("the reserved bit after the sync code is set");
        r.Read(1); // fixed or variable block size: the coded number below is read the same way either way
        uint blockCode = r.Read(4), rateCode = r.Read(4), channelCode = r.Read(4), sizeCode = r.Read(3);
        if (r.Read(1) != 0) throw Bad("the reserved bit after the sample size is set");
        ReadCodedNumber(ref r, Bad);

        int blockSize = blockCode switch
        {
            0 => throw Bad("reserved block size code 0"),
            1 => 192,
            <= 5 => 576 << (int)(blockCode - 2),
            6 => (int)r.Read(8) + 1,
            7 => (int)r.Read(16) + 1,
            _ => 256 << (int)(blockCode - 8),
        };
        switch (rateCode)
        {
            case 12: r.Read(8); break;  // the rate in kHz, in Hz, or in tens of Hz: STREAMINFO's rate is used
            case 13 or 14: r.Read(16); break;
            case 15: throw Bad("invalid sample rate code 15");
        }
        int bits = sizeCode switch
        {
            0 => si.BitsPerSample,
            1 => 8,
            2 => 12,
            4 => 16,
            5 => 20,
            6 => 24,
            7 => 32,
            _ => throw Bad("reserved sample size code 3"),
        };
        if (bits != si.BitsPerSample) throw Bad($"frame has {bits} bits per sample, STREAMINFO {si.BitsPerSample}");
        var (channels, mode) = channelCode switch
        {
            <= 7 => ((int)channelCode + 1, ChannelMode.Independent),
            8 => (2, ChannelMode.LeftSide),
            9 => (2, ChannelMode.SideRight),
            10 => (2, ChannelMode.MidSide),
            _ => throw Bad($"reserved channel assignment {channelCode}"),
        };
        if (channels != si.Channels) throw Bad($"frame has {channels} channels, STREAMINFO {si.Channels}");

        int headerLength = r.BytePosition;
        byte crc8 = (byte)r.Read(8);
        byte computed8 = Crc8(file.Slice(start, headerLength));
        if (crc8 != computed8) throw Bad($"header CRC-8 is 0x{crc8:X2}, computed 0x{computed8:X2} (corrupt frame header)");

        for (int c = 0; c < channels; c++)
        {
            if (scratch[c] is null || scratch[c].Length < blockSize) scratch[c] = new long[Math.Max(blockSize, si.MaxBlockSize)];
            bool side = (mode == ChannelMode.LeftSide && c == 1) || (mode == ChannelMode.SideRight && c == 0) || (mode == ChannelMode.MidSide && c == 1);
            DecodeSubframe(ref r, scratch[c].AsSpan(0, blockSize), bits + (side ? 1 : 0), ref residual, c, Bad);
        }

        r.AlignToByte();
        int frameLength = r.BytePosition;
        ushort crc16 = (ushort)r.Read(16);
        ushort computed16 = Crc16(file.Slice(start, frameLength));
        if (crc16 != computed16) throw Bad($"frame CRC-16 is 0x{crc16:X4}, computed 0x{computed16:X4} (corrupt frame)");

        Decorrelate(scratch, blockSize, mode);
        output.Append(scratch, blockSize);
        if (md5 is not null) HashSamples(md5, scratch, channels, blockSize, bits);
        return start + r.BytePosition;
    }

    /// <summary>The frame or sample number, coded like UTF-8 (up to 7 bytes, 36 bits); only its validity matters here.</summary>
    static void ReadCodedNumber(ref BitReader r, Func<string, AudioException> bad)
    {
        uint first = r.Read(8);
        int more = first switch
        {
            < 0x80 => 0,
            < 0xC0 => throw bad($"invalid coded frame number: first byte 0x{first:X2}"),
            < 0xE0 => 1,
            < 0xF0 => 2,
            < 0xF8 => 3,
            < 0xFC => 4,
            < 0xFE => 5,
            0xFE => 6,
            _ => throw bad("invalid coded frame number: first byte 0xFF"),
        };
        for (int i = 0; i < more; i++)
        {
            uint b = r.Read(8);
            if ((b & 0xC0) != 0x80) throw bad($"invalid coded frame number: continuation byte 0x{b:X2}");
        }
    }

    static void DecodeSubframe(ref BitReader r, Span<long> s, int bits, ref long[] residual, int channel, Func<string, AudioException> bad)
    {
        if (r.Read(1) != 0) throw bad($"subframe {channel}: the padding bit is set");
        uint type = r.Read(6);
        int wasted = 0;
        if (r.Read(1) == 1) wasted = (int)r.ReadUnary() + 1;
        if (wasted >= bits) throw bad($"subframe {channel}: {wasted} wasted bits of a {bits}-bit sample");
        bits -= wasted;

        switch (type)
        {
            case 0: // CONSTANT
                s.Fill(r.ReadSigned(bits));
                break;
            case 1: // VERBATIM
                for (int i = 0; i < s.Length; i++) s[i] = r.ReadSigned(bits);
                break;
            case >= 8 and <= 12: // FIXED, order 0..4
            {
                int order = (int)type - 8;
                if (order > s.Length) throw bad($"subframe {channel}: fixed predictor order {order} exceeds the block size {s.Length}");
                for (int i = 0; i < order; i++) s[i] = r.ReadSigned(bits);
                ReadResidual(ref r, s, order, ref residual, channel, bad);
                PredictFixed(s, order);
                break;
            }
            case >= 32: // LPC, order 1..32
            {
                int order = (int)type - 31;
                if (order > s.Length) throw bad($"subframe {channel}: LPC order {order} exceeds the block size {s.Length}");
                for (int i = 0; i < order; i++) s[i] = r.ReadSigned(bits);
                int precision = (int)r.Read(4) + 1;
                if (precision == 16) throw bad($"subframe {channel}: invalid LPC coefficient precision (0b1111)");
                int shift = (int)r.ReadSigned(5);
                if (shift < 0) throw bad($"subframe {channel}: negative LPC shift {shift}");
                Span<long> coefs = stackalloc long[order];
                for (int i = 0; i < order; i++) coefs[i] = r.ReadSigned(precision);
                ReadResidual(ref r, s, order, ref residual, channel, bad);
                PredictLpc(s, coefs, shift);
                break;
            }
            default:
                throw bad($"subframe {channel}: reserved subframe type 0b{Convert.ToString(type, 2).PadLeft(6, '0')}");
        }
        if (wasted > 0)
            for (int i = 0; i < s.Length; i++) s[i] <<= wasted;
    }

    /// <summary>Reads the residual of a predicted subframe into s[order..], to be turned into samples by the predictor.</summary>
    static void ReadResidual(ref BitReader r, Span<long> s, int order, ref long[] scratch, int channel, Func<string, AudioException> bad)
    {
        uint method = r.Read(2);
        if (method > 1) throw bad($"subframe {channel}: reserved residual coding method {method}");
        int paramBits = method == 0 ? 4 : 5;
        uint escape = (1u << paramBits) - 1;
        int partitionOrder = (int)r.Read(4);
        int partitions = 1 << partitionOrder;
        if (s.Length % partitions != 0)
            throw bad($"subframe {channel}: block size {s.Length} is not divisible into 2^{partitionOrder} residual partitions");
        int perPartition = s.Length >> partitionOrder;
        if (perPartition < order)
            throw bad($"subframe {channel}: the first residual partition ({perPartition} samples) is shorter than the predictor order {order}");

        int i = order;
        for (int p = 0; p < partitions; p++)
        {
            int end = (p + 1) * perPartition;
            uint param = r.Read(paramBits);
            if (param == escape)
            {
                int width = (int)r.Read(5);
                for (; i < end; i++) s[i] = width == 0 ? 0 : r.ReadSigned(width);
            }
            else
            {
                for (; i < end; i++)
                {
                    ulong q = r.ReadUnary();
                    ulong u = q << (int)param | r.Read((int)param);
                    s[i] = (long)(u >> 1) ^ -(long)(u & 1); // zigzag: 0, -1, 1, -2, 2, ...
                }
            }
        }
    }

    static void PredictFixed(Span<long> s, int order)
    {
        switch (order)
        {
            case 1: for (int i = 1; i < s.Length; i++) s[i] += s[i - 1]; break;
            case 2: for (int i = 2; i < s.Length; i++) s[i] += 2 * s[i - 1] - s[i - 2]; break;
            case 3: for (int i = 3; i < s.Length; i++) s[i] += 3 * s[i - 1] - 3 * s[i - 2] + s[i - 3]; break;
            case 4: for (int i = 4; i < s.Length; i++) s[i] += 4 * s[i - 1] - 6 * s[i - 2] + 4 * s[i - 3] - s[i - 4]; break;
        }
    }

    static void PredictLpc(Span<long> s, ReadOnlySpan<long> coefs, int shift)
    {
        int order = coefs.Length;
        for (int i = order; i < s.Length; i++)
        {
            long sum = 0;
            for (int j = 0; j < order; j++) sum += coefs[j] * s[i - 1 - j];
            s[i] += sum >> shift;
        }
    }

    static void Decorrelate(long[][] s, int n, ChannelMode mode)
    {
        switch (mode)
        {
            case ChannelMode.LeftSide: // right = left - side
                for (int i = 0; i < n; i++) s[1][i] = s[0][i] - s[1][i];
                break;
            case ChannelMode.SideRight: // left = side + right
                for (int i = 0; i < n; i++) s[0][i] += s[1][i];
                break;
            case ChannelMode.MidSide: // the encoder dropped mid's lowest bit; side's parity restores it
                for (int i = 0; i < n; i++)
                {
                    long side = s[1][i], mid = s[0][i] << 1 | (side & 1);
                    s[0][i] = (mid + side) >> 1;
                    s[1][i] = (mid - side) >> 1;
                }
                break;
        }
    }

    /// <summary>STREAMINFO's MD5 covers the samples interleaved, little-endian, each in ceil(bits / 8) bytes.</summary>
    static void HashSamples(IncrementalHash md5, long[][] s, int channels, int n, int bits)
    {
        int width = (bits + 7) / 8;
        var buffer = new byte[n * channels * width];
        for (int i = 0, o = 0; i < n; i++)
            for (int c = 0; c < channels; c++)
            {
                long v = s[c][i];
                for (int k = 0; k < width; k++) buffer[o++] = (byte)(v >> (8 * k));
            }
        md5.AppendData(buffer);
    }

    static byte Crc8(ReadOnlySpan<byte> data)
    {
        int crc = 0; // polynomial x^8 + x^2 + x + 1, initial 0
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 0x80) != 0 ? (crc << 1 ^ 0x07) & 0xFF : crc << 1 & 0xFF;
        }
        return (byte)crc;
    }

    static readonly ushort[] Crc16Table = BuildCrc16Table();

    static ushort[] BuildCrc16Table()
    {
        var table = new ushort[256]; // polynomial x^16 + x^15 + x^2 + 1, initial 0, most significant bit first
        for (int i = 0; i < 256; i++)
        {
            int crc = i << 8;
            for (int k = 0; k < 8; k++) crc = (crc & 0x8000) != 0 ? crc << 1 ^ 0x8005 : crc << 1;
            table[i] = (ushort)crc;
        }
        return table;
    }

    static ushort Crc16(ReadOnlySpan<byte> data)
    {
        ushort crc = 0;
        foreach (byte b in data) crc = (ushort)(crc << 8 ^ Crc16Table[(crc >> 8) ^ b]);
        return crc;
    }

    /// <summary>Collects decoded blocks into per-channel arrays, preallocated when STREAMINFO gives the length.</summary>
    sealed class SampleSink(int channels, long expected)
    {
        int[][] data = Enumerable.Range(0, channels).Select(_ => new int[(int)Math.Min(expected, int.MaxValue / 2)]).ToArray();

        public int Length { get; private set; }

        public void Append(long[][] block, int n)
        {
            if ((long)Length + n > Array.MaxLength) throw new InvalidDataException("FLAC stream too long to hold in memory");
            if (Length + n > data[0].Length)
            {
                int size = (int)Math.Min(Array.MaxLength, Math.Max(Length + n, 2L * data[0].Length));
                for (int c = 0; c < data.Length; c++) Array.Resize(ref data[c], size);
            }
            for (int c = 0; c < data.Length; c++)
            {
                var dst = data[c].AsSpan(Length, n);
                var src = block[c];
                for (int i = 0; i < n; i++) dst[i] = (int)src[i];
            }
            Length += n;
        }

        public int[][] ToArrays()
        {
            for (int c = 0; c < data.Length; c++)
                if (data[c].Length != Length) Array.Resize(ref data[c], Length);
            return data;
        }
    }

    /// <summary>Most-significant-bit-first reader over one frame's bytes, with a 64-bit cache.</summary>
    ref struct BitReader(ReadOnlySpan<byte> data, string name, string where)
    {
        readonly ReadOnlySpan<byte> data = data;
        int next;    // the next byte to load into the cache
        ulong cache; // valid bits left-aligned; the bits below them are zero
        int count;   // valid bits in the cache

        /// <summary>Bytes consumed so far (exact when byte-aligned).</summary>
        public readonly int BytePosition => next - count / 8;

        void Refill()
        {
            while (count <= 56 && next < data.Length)
            {
                cache |= (ulong)data[next++] << (56 - count);
                count += 8;
            }
        }

        readonly AudioException Truncated() => new(name, $"{where}: the frame runs past the end of the file (truncated?)");

        /// <summary>An unsigned value of 0..32 bits.</summary>
        public uint Read(int n)
        {
            if (n == 0) return 0;
            if (count < n)
            {
                Refill();
                if (count < n) throw Truncated();
            }
            uint v = (uint)(cache >> (64 - n));
            cache <<= n;
            count -= n;
            return v;
        }

        /// <summary>A two's-complement value of 1..33 bits (33 for the side channel of 32-bit audio).</summary>
        public long ReadSigned(int n)
        {
            ulong raw = n > 32 ? (ulong)Read(n - 32) << 32 | Read(32) : Read(n);
            int unused = 64 - n;
            return (long)(raw << unused) >> unused;
        }

        /// <summary>The number of zero bits before the next one bit (which is consumed).</summary>
        public uint ReadUnary()
        {
            uint zeros = 0;
            while (true)
            {
                if (count == 0)
                {
                    Refill();
                    if (count == 0) throw Truncated();
                }
                if (cache == 0)
                {
                    zeros += (uint)count;
                    count = 0;
                    continue;
                }
                int lz = BitOperations.LeadingZeroCount(cache); // < count: the bits below the valid ones are zero
                zeros += (uint)lz;
                cache = lz == 63 ? 0 : cache << (lz + 1);
                count -= lz + 1;
                return zeros;
            }
        }

        public void AlignToByte()
        {
            int extra = count % 8;
            cache <<= extra;
            count -= extra;
        }
    }
}
