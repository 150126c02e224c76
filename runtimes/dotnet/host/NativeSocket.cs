// TCP through libc instead of System.Net.Sockets. Mono's first Socket reads machine.config
// through System.Configuration and System.Xml (~150-300 ms: measured 274 ms for the config
// section alone on a busy machine), which every warm start would pay before it could listen. The
// calls here are the plain POSIX ones; EINTR (Mono's GC suspends threads with signals) is retried.
using System;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;

namespace Fizz.Dotnet
{
    /// <summary>What a connection needs from its transport besides the byte stream.</summary>
    internal interface ITransport
    {
        void ShutdownSend();
        void SetReceiveTimeout(int ms);
        void Abort();
    }

    internal static unsafe class Libc
    {
        public const int EINTR = 4;
        public const int EAGAIN = 11;

        [DllImport("libc", SetLastError = true)] public static extern int socket(int domain, int type, int protocol);
        [DllImport("libc", SetLastError = true)] public static extern int socketpair(int domain, int type, int protocol, int* sv);
        [DllImport("libc", SetLastError = true)] public static extern int setsockopt(int fd, int level, int name, void* value, int len);
        [DllImport("libc", SetLastError = true)] public static extern int bind(int fd, byte* addr, int len);
        [DllImport("libc", SetLastError = true)] public static extern int listen(int fd, int backlog);
        [DllImport("libc", SetLastError = true)] public static extern int accept4(int fd, IntPtr addr, IntPtr len, int flags);
        [DllImport("libc", SetLastError = true)] public static extern IntPtr recv(int fd, byte* buf, IntPtr len, int flags);
        [DllImport("libc", SetLastError = true)] public static extern IntPtr send(int fd, byte* buf, IntPtr len, int flags);
        [DllImport("libc", SetLastError = true)] public static extern int shutdown(int fd, int how);
        [DllImport("libc", SetLastError = true)] public static extern int close(int fd);
    }

    /// <summary>A listening IPv4 TCP socket.</summary>
    internal sealed unsafe class NativeListener
    {
        private const int AF_INET = 2;
        private const int SOCK_STREAM = 1;
        private const int SOCK_CLOEXEC = 0x80000;
        private const int SOL_SOCKET = 1;
        private const int SO_REUSEADDR = 2;
        private int _fd;

        public NativeListener(IPAddress address, int port, int backlog)
        {
            _fd = Libc.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (_fd < 0) throw Error("socket");
            int one = 1;
            Libc.setsockopt(_fd, SOL_SOCKET, SO_REUSEADDR, &one, 4);
            var sa = stackalloc byte[16];
            for (var i = 0; i < 16; i++) sa[i] = 0;
            sa[0] = AF_INET; // sin_family, little-endian u16
            sa[2] = (byte)(port >> 8);
            sa[3] = (byte)port;
            var ip = address.GetAddressBytes();
            for (var i = 0; i < 4; i++) sa[4 + i] = ip[i];
            if (Libc.bind(_fd, sa, 16) != 0 || Libc.listen(_fd, backlog) != 0)
            {
                var e = Error("bind " + address + ":" + port);
                Libc.close(_fd);
                throw e;
            }
        }

        internal static IOException Error(string what)
        {
            return new IOException(what + " failed: errno " + Marshal.GetLastWin32Error());
        }

        /// <summary>The next connection; null once the listener is stopped.</summary>
        public NativeSocketStream Accept()
        {
            for (;;)
            {
                var fd = _fd;
                if (fd < 0) return null;
                var c = Libc.accept4(fd, IntPtr.Zero, IntPtr.Zero, SOCK_CLOEXEC);
                if (c >= 0)
                {
                    var s = new NativeSocketStream(c);
                    s.NoDelay();
                    return s;
                }
                var errno = Marshal.GetLastWin32Error();
                if (errno == Libc.EINTR || errno == 103 /* ECONNABORTED */ || errno == Libc.EAGAIN) continue;
                if (_fd < 0) return null;
                if (errno == 24 || errno == 23) { System.Threading.Thread.Sleep(50); continue; } // EMFILE/ENFILE
                throw Error("accept");
            }
        }

        /// <summary>Refuses new connections and wakes the threads blocked in accept.</summary>
        public void Stop()
        {
            var fd = _fd;
            _fd = -1;
            if (fd < 0) return;
            Libc.shutdown(fd, 2);
            Libc.close(fd);
        }
    }

    /// <summary>A connected socket as a Stream.</summary>
    internal sealed unsafe class NativeSocketStream : Stream, ITransport
    {
        private const int MSG_NOSIGNAL = 0x4000;
        private int _fd;

        public NativeSocketStream(int fd)
        {
            _fd = fd;
        }

        /// <summary>Two connected ends (AF_UNIX): the rehearsal's private client and server.</summary>
        public static NativeSocketStream[] Pair()
        {
            var sv = stackalloc int[2];
            if (Libc.socketpair(1 /* AF_UNIX */, 1 | 0x80000, 0, sv) != 0) throw NativeListener.Error("socketpair");
            return new[] { new NativeSocketStream(sv[0]), new NativeSocketStream(sv[1]) };
        }

        public void NoDelay()
        {
            int one = 1;
            Libc.setsockopt(_fd, 6 /* IPPROTO_TCP */, 1 /* TCP_NODELAY */, &one, 4);
        }

        public void SetReceiveTimeout(int ms)
        {
            var tv = stackalloc long[2];
            tv[0] = ms / 1000;
            tv[1] = (ms % 1000) * 1000;
            Libc.setsockopt(_fd, 1 /* SOL_SOCKET */, 20 /* SO_RCVTIMEO */, tv, 16);
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (count == 0) return 0;
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException("count");
            fixed (byte* p = buffer)
            {
                for (;;)
                {
                    var n = (long)Libc.recv(_fd, p + offset, (IntPtr)count, 0);
                    if (n >= 0) return (int)n;
                    var errno = Marshal.GetLastWin32Error();
                    if (errno == Libc.EINTR) continue;
                    if (errno == Libc.EAGAIN) throw new IOException("receive timed out");
                    throw new IOException("recv failed: errno " + errno);
                }
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException("count");
            fixed (byte* p = buffer)
            {
                while (count > 0)
                {
                    var n = (long)Libc.send(_fd, p + offset, (IntPtr)count, MSG_NOSIGNAL);
                    if (n < 0)
                    {
                        var errno = Marshal.GetLastWin32Error();
                        if (errno == Libc.EINTR) continue;
                        throw new IOException("send failed: errno " + errno);
                    }
                    offset += (int)n;
                    count -= (int)n;
                }
            }
        }

        public void ShutdownSend()
        {
            if (_fd >= 0) Libc.shutdown(_fd, 1);
        }

        public void Abort()
        {
            if (_fd >= 0) Libc.shutdown(_fd, 2);
        }

        protected override void Dispose(bool disposing)
        {
            var fd = _fd;
            _fd = -1;
            if (fd >= 0) Libc.close(fd);
            base.Dispose(disposing);
        }

        public override bool CanRead { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override bool CanWrite { get { return true; } }
        public override long Length { get { throw new NotSupportedException(); } }
        public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
        public override void SetLength(long value) { throw new NotSupportedException(); }
    }
}
