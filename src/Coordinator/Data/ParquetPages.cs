namespace Qwen3Tts.Coordinator.Data;

/// <summary>Walks the page headers of a Parquet column chunk before Parquet.Net reads it: each page must lie inside its
/// chunk and declare no more uncompressed bytes than the chunk does, so a damaged header cannot make the reader
/// allocate gigabytes. Page headers are Thrift compact structs (parquet-format's PageHeader: 1 type, 2 uncompressed
/// size, 3 compressed size, then optional fields, skipped); Parquet.Net keeps its Thrift reader internal.</summary>
public static class ParquetPages
{
    /// <summary>Longest page header read (they hold a few sizes and, at most, statistics).</summary>
    const int MaxHeaderBytes = 1 << 20;

    /// <summary>Why the chunk of <paramref name="length"/> bytes at <paramref name="offset"/>, declaring
    /// <paramref name="uncompressed"/> bytes in all, has a page it cannot hold; null when every page fits.</summary>
    public static string? Problem(Stream file, long offset, long length, long uncompressed)
    {
        ArgumentNullException.ThrowIfNull(file);
        long end = offset + length, at = offset;
        var buffer = new byte[256];
        for (int page = 0; at < end; page++)
        {
            // A header is a few dozen bytes; one with large statistics is read again with a bigger buffer.
            int headerBytes = 0, pageUncompressed = 0, pageCompressed = 0;
            bool read = false;
            for (int size = 256; !read && size <= MaxHeaderBytes; size *= 16)
            {
                if (buffer.Length < size) buffer = new byte[size];
                file.Position = at;
                int n = file.ReadAtLeast(buffer.AsSpan(0, (int)Math.Min(size, end - at)), 1, throwOnEndOfStream: false);
                read = TryReadHeader(buffer.AsSpan(0, n), out headerBytes, out pageUncompressed, out pageCompressed);
                if (n < size) break; // the chunk's end is in the buffer: more bytes would not help
            }
            if (!read) return $"page {page} at offset {at}: its header cannot be read";
            if (pageCompressed < 0 || at + headerBytes + pageCompressed > end)
                return $"page {page} at offset {at}: declares {pageCompressed} bytes, past the end of its column chunk (offset {end})";
            if (pageUncompressed < 0 || pageUncompressed > uncompressed)
                return $"page {page} at offset {at}: declares {pageUncompressed} bytes uncompressed, more than its column chunk's {uncompressed}";
            at += headerBytes + pageCompressed;
        }
        return null;
    }

    /// <summary>Reads a PageHeader's sizes (fields 2 and 3) and its length in bytes; false when the bytes are not one.</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> bytes, out int length, out int uncompressed, out int compressed)
    {
        var r = new Reader(bytes);
        bool ok = r.SkipStruct(depth: 0) && r.Uncompressed is not null && r.Compressed is not null;
        (length, uncompressed, compressed) = (r.Position, r.Uncompressed ?? 0, r.Compressed ?? 0);
        return ok;
    }

    /// <summary>Thrift compact protocol, as far as skipping a struct needs (parquet-format's types only).</summary>
    ref struct Reader(ReadOnlySpan<byte> bytes)
    {
        readonly ReadOnlySpan<byte> bytes = bytes;
        public int Position;

        /// <summary>The outermost struct's fields 2 and 3 (i32): a PageHeader's uncompressed and compressed sizes.</summary>
        public int? Uncompressed, Compressed;

        bool Byte(out byte b)
        {
            b = 0;
            if (Position >= bytes.Length) return false;
            b = bytes[Position++];
            return true;
        }

        bool Varint(out ulong value)
        {
            value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (!Byte(out byte b)) return false;
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return true;
            }
            return false;
        }

        bool ZigZag(out long value)
        {
            value = 0;
            if (!Varint(out ulong raw)) return false;
            value = (long)(raw >> 1) ^ -(long)(raw & 1);
            return true;
        }

        bool Skip(int count)
        {
            if (count < 0 || Position + count > bytes.Length) return false;
            Position += count;
            return true;
        }

        /// <summary>Fields until the stop byte; at depth 0, i32 fields 2 and 3 are kept.</summary>
        public bool SkipStruct(int depth)
        {
            if (depth > 16) return false;
            short field = 0;
            while (true)
            {
                if (!Byte(out byte header)) return false;
                if (header == 0) return true; // stop
                int type = header & 0x0F, delta = header >> 4;
                if (delta != 0) field += (short)delta;
                else
                {
                    if (!ZigZag(out long id)) return false;
                    field = (short)id;
                }
                if (type == 5 && depth == 0 && field is 2 or 3)
                {
                    if (!ZigZag(out long value) || value < int.MinValue || value > int.MaxValue) return false;
                    if (field == 2) Uncompressed = (int)value;
                    else Compressed = (int)value;
                }
                else if (!SkipValue(type, depth)) return false;
            }
        }

        bool SkipValue(int type, int depth)
        {
            switch (type)
            {
                case 1 or 2: return true;                          // bool true / false, in the header
                case 3: return Skip(1);                            // byte
                case 4 or 5 or 6: return ZigZag(out _);            // i16, i32, i64
                case 7: return Skip(8);                            // double
                case 8: return Varint(out ulong n) && n <= int.MaxValue && Skip((int)n); // binary
                case 9 or 10:                                      // list, set
                {
                    if (!Byte(out byte h)) return false;
                    long count = h >> 4;
                    if (count == 15 && !(Varint(out ulong big) && (count = (long)Math.Min(big, int.MaxValue)) >= 0)) return false;
                    int element = h & 0x0F;
                    for (long i = 0; i < count; i++)
                        if (!(element is 1 or 2 ? Skip(1) : SkipValue(element, depth + 1))) return false;
                    return true;
                }
                case 11:                                           // map
                {
                    if (!Varint(out ulong count)) return false;
                    if (count == 0) return true;
                    if (!Byte(out byte kv)) return false;
                    for (ulong i = 0; i < count; i++)
                        if (!SkipValue(kv >> 4, depth + 1) || !SkipValue(kv & 0x0F, depth + 1)) return false;
                    return true;
                }
                case 12: return SkipStruct(depth + 1);             // struct
                default: return false;
            }
        }
    }
}
