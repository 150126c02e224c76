// The instance's own hard concurrency limit: at most `limit` calls run at once and at most
// `queueMax` wait (FIFO); past that the caller answers 429. Gateways account for leases too, but
// this limit is the one that holds when their accounting is wrong.
using System.Collections.Generic;
using System.Threading;

namespace Fizz.Dotnet
{
    internal sealed class Limiter
    {
        private readonly int _limit;
        private readonly int _queueMax;
        private int _active;
        private readonly LinkedList<object> _waiting = new LinkedList<object>();
        private readonly HashSet<object> _granted = new HashSet<object>();
        private readonly object _lock = new object();

        public Limiter(int limit, int queueMax)
        {
            _limit = limit;
            _queueMax = queueMax;
        }

        /// <summary>Blocks while queued; null (at once) when both the slots and the queue are full.</summary>
        public Ticket Acquire()
        {
            lock (_lock)
            {
                if (_active < _limit)
                {
                    _active++;
                    return new Ticket(this);
                }
                if (_waiting.Count >= _queueMax) return null;
                var me = new object();
                _waiting.AddLast(me);
                while (!_granted.Remove(me)) Monitor.Wait(_lock);
                return new Ticket(this);
            }
        }

        /// <summary>A slot, given back once, when the call's function has returned (its client
        /// may have left long before: the function still ran on the instance until then).</summary>
        internal sealed class Ticket
        {
            private readonly Limiter _limiter;
            private int _released;

            public Ticket(Limiter limiter)
            {
                _limiter = limiter;
            }

            public void Release()
            {
                if (Interlocked.Exchange(ref _released, 1) == 0) _limiter.Release();
            }
        }

        /// <summary>A finished call hands its slot straight to the oldest waiter.</summary>
        private void Release()
        {
            lock (_lock)
            {
                if (_waiting.Count == 0)
                {
                    _active--;
                    return;
                }
                var next = _waiting.First.Value;
                _waiting.RemoveFirst();
                _granted.Add(next);
                Monitor.PulseAll(_lock);
            }
        }
    }
}
