// Call markers (shared/events/src/logs.ts): the platform tags the lines after
// "\e_fizz:call=<id>\e\\" on stdout or stderr with request <id>, until "\e_fizz:call=\e\\".
//
// Calls run on threads of one process and everything they print goes through Console.Out and
// Console.Error, so each write knows whose it is: the call that runs sets an AsyncLocal (which
// flows into the tasks, threads and timers it starts), and Console's writers are replaced by ones
// that precede a write by its owner's marker when the stream is marked with someone else, ending
// an unfinished line first. A call that prints nothing costs no write; once the call is over, a
// stream it marked is cleared, and what its leftover tasks or threads print belongs to no call.
using System;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;

namespace Fizz.Dotnet
{
    internal static class CallMarks
    {
        /// <summary>The call a piece of code runs for; Ended once the call has answered.</summary>
        internal sealed class Owner
        {
            public readonly string Id;
            public volatile bool Ended;
            public Owner(string id) { Id = id; }
        }

        private static readonly AsyncLocal<Owner> Current = new AsyncLocal<Owner>();
        private static readonly Regex Token = new Regex("^[A-Za-z0-9._:-]{1,128}$", RegexOptions.CultureInvariant);

        /// <summary>Console.Out and Console.Error, marked; once, before anything prints.</summary>
        public static void Install()
        {
            Writers[0] = new MarkedWriter(Console.Out);
            Writers[1] = new MarkedWriter(Console.Error);
            Console.SetOut(Writers[0]);
            Console.SetError(Writers[1]);
        }

        /// <summary>
        /// This thread runs the call with the gateway's request id now (none, or a malformed one: its
        /// output belongs to no call). Returns what Leave takes.
        /// </summary>
        public static Owner Enter(string requestId)
        {
            var owner = requestId != null && Token.IsMatch(requestId) ? new Owner(requestId) : null;
            Current.Value = owner;
            return owner;
        }

        public static void Leave(Owner owner)
        {
            Current.Value = null;
            if (owner == null) return;
            owner.Ended = true;
            // A stream still marked with the call goes back to no call's, so what reaches its fd
            // around Console afterwards (a child process, OpenStandardOutput, native code) is not
            // tagged with it. Only calls that printed pay a write.
            foreach (var writer in Writers) writer?.Release(owner.Id);
        }

        private static readonly MarkedWriter[] Writers = new MarkedWriter[2];

        internal static string OwnerId()
        {
            var owner = Current.Value;
            return owner == null || owner.Ended ? "" : owner.Id;
        }

        /// <summary>A stream's writer that marks each write with its owner when the stream changes hands.</summary>
        private sealed class MarkedWriter : TextWriter
        {
            private readonly TextWriter _inner;
            private readonly object _lock = new object();
            private string _mark = "";
            private bool _open;

            public MarkedWriter(TextWriter inner) { _inner = inner; }

            public override Encoding Encoding { get { return _inner.Encoding; } }
            public override IFormatProvider FormatProvider { get { return _inner.FormatProvider; } }

            public override void Write(char value) { Emit(value.ToString(), false); }
            public override void Write(string value) { Emit(value, false); }
            public override void Write(char[] buffer, int index, int count) { Emit(new string(buffer, index, count), false); }
            public override void WriteLine() { Emit("", true); }
            public override void WriteLine(string value) { Emit(value, true); }
            public override void Flush() { lock (_lock) _inner.Flush(); }

            public void Release(string id)
            {
                lock (_lock)
                {
                    if (_mark != id) return;
                    var text = (_open ? "\n" : "") + "\u001b_fizz:call=\u001b\\\n";
                    _mark = "";
                    _open = false;
                    try { _inner.Write(text); _inner.Flush(); }
                    catch (IOException) { } // a closed stream: the call's answer is out regardless
                }
            }

            private void Emit(string text, bool line)
            {
                if (text == null) text = "";
                if (line) text += CoreNewLineStr();
                if (text.Length == 0) return;
                var owner = OwnerId();
                lock (_lock)
                {
                    if (owner != _mark)
                    {
                        _inner.Write((_open ? "\n" : "") + "\u001b_fizz:call=" + owner + "\u001b\\\n" + text);
                        _mark = owner;
                    }
                    else _inner.Write(text);
                    _open = text[text.Length - 1] != '\n';
                }
            }

            private string CoreNewLineStr() { return new string(CoreNewLine); }
        }
    }
}
