# The load balancers of an upstream group (APISIX's names: roundrobin, least_conn, chash, ewma).
# One balancer chooses among the nodes of one priority level; UpstreamGroup asks its levels in
# order, highest priority first. Every balancer skips the nodes `usable` refuses: the one test of
# whether a node may take a request (not down by its health checks, not already failed by this
# request).

from libc.math cimport exp
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

# Points on the consistent-hash ring per unit of weight, and the most a ring may hold (heavier
# weights are scaled down to fit, keeping their proportions). ketama and APISIX use 160; a node's
# share of the ring then varies by about 1 / (nodes * sqrt(points)): 25% +- 2% for 4 nodes, so a
# 4th node sometimes takes 30% of the keys. 640 halves that spread for 4x the (small) memory.
cdef enum:
    CHASH_POINTS = 640
    CHASH_MAX_POINTS = 1 << 16
# Peak-EWMA: the decay time constant (APISIX and Finagle use 10 s), and the cost given to a node
# with requests in flight but no measured latency yet (Finagle's penalty), in seconds.
cdef double EWMA_DECAY_TIME = 10.0
cdef double EWMA_PENALTY = 1000.0


cdef inline uint64_t mix64(uint64_t h) nogil:
    """MurmurHash3's 64-bit finaliser: every input bit affects every output bit."""
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef uint64_t hash_bytes(const char *data, Py_ssize_t size) nogil:
    """FNV-1a over the bytes, then mixed: the same value in every process (no hash seed), so all
    workers of all nodes put a key at the same place on the ring."""
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(size):
        h ^= <uint8_t>data[i]
        h *= 0x100000001b3ULL
    return mix64(h)


cdef uint64_t hash_text(object text) except? 0:
    """The ring position of a key given as text (its UTF-8 bytes) or bytes."""
    cdef const char *data
    cdef Py_ssize_t size
    if isinstance(text, bytes):
        data = PyBytes_AS_STRING(text)
        size = PyBytes_GET_SIZE(text)
        return hash_bytes(data, size)
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    data = PyUnicode_AsUTF8AndSize(text, &size)
    return hash_bytes(data, size)


cdef class Balancer:
    """Chooses a node among ``nodes`` (one priority level) for a request; the subclasses are
    the algorithms. ``pick`` returns None when no node is usable."""

    def __init__(self, nodes):
        self.nodes = tuple(nodes)
        self.count = len(self.nodes)

    cdef UpstreamNode pick(self, Exchange ex, set exclude):
        return None

    cdef bint usable(self, UpstreamNode node, set exclude):
        """Whether ``node`` may take this request: the one place that decides it (not down by
        its health checks, one atomic load; not already failed by this request)."""
        if node.health != NULL and gw_node_down(node.health) and not self.health_blind:
            return False
        return exclude is None or node not in exclude

    cdef void observe(self, UpstreamNode node, double seconds, double now):
        """A response from ``node`` took ``seconds`` (only latency-aware balancers keep it)."""
        pass

    cdef Py_ssize_t index_of(self, UpstreamNode node):
        cdef Py_ssize_t i
        for i in range(self.count):
            if <UpstreamNode>self.nodes[i] is node:
                return i
        return -1

    def choose(self, set exclude=None):
        """``pick`` for a request that has no variables (tests, tools); chash uses its
        fallback key then."""
        return self.pick(None, exclude)

    def __repr__(self):
        return f"{type(self).__name__}({list(self.nodes)!r})"


cdef class RoundRobinBalancer(Balancer):
    """Smooth weighted round robin (nginx's): each pick adds every usable node's weight to its
    counter and takes the largest, which then gives back the total. Exact proportions, and a
    heavy node's turns are spread out rather than bunched."""

    def __init__(self, nodes):
        cdef Py_ssize_t i
        Balancer.__init__(self, nodes)
        self.current = <int *>PyMem_Malloc(max(self.count, 1) * sizeof(int))
        if self.current == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.current[i] = 0
        self.total_weight = sum((<UpstreamNode>n).weight for n in self.nodes)

    def __dealloc__(self):
        PyMem_Free(self.current)

    cdef UpstreamNode pick(self, Exchange ex, set exclude):
        cdef UpstreamNode node
        cdef Py_ssize_t i, best = -1
        cdef int total = 0
        if self.count == 1:
            node = <UpstreamNode>self.nodes[0]
            return node if self.usable(node, exclude) else None
        for i in range(self.count):
            node = <UpstreamNode>self.nodes[i]
            if not self.usable(node, exclude):
                continue
            self.current[i] += node.weight
            total += node.weight
            if best < 0 or self.current[i] > self.current[best]:
                best = i
        if best < 0:
            return None
        self.current[best] -= total
        return <UpstreamNode>self.nodes[best]


cdef class LeastConnBalancer(Balancer):
    """The node with the fewest requests in flight for its weight (APISIX's score,
    (active + 1) / weight, compared by cross-multiplying); ties go round robin, so idle nodes
    share sequential traffic. In-flight requests are counted per worker."""

    cdef UpstreamNode pick(self, Exchange ex, set exclude):
        cdef UpstreamNode node, best = None
        cdef Py_ssize_t k, i, start = self.cursor
        if self.count == 0:
            return None
        self.cursor = start + 1 if start + 1 < self.count else 0
        for k in range(self.count):
            i = start + k
            if i >= self.count:
                i -= self.count
            node = <UpstreamNode>self.nodes[i]
            if not self.usable(node, exclude):
                continue
            if best is None or (<int64_t>node.active + 1) * best.weight < \
                    (<int64_t>best.active + 1) * node.weight:
                best = node
        return best


cdef class ChashBalancer(Balancer):
    """Consistent hashing on a ring (ketama): each node owns ``640 * weight`` points placed by
    hashing "host:port#n", so a node's points do not depend on the other nodes; a key goes to
    the owner of the first point at or after its hash. Adding or removing a node moves only the
    keys of that node's points. ``key_of(request)`` gives the key text; a retry walks on along
    the ring to the next usable node (APISIX's chash:next)."""

    def __init__(self, nodes, key_of=None):
        cdef Py_ssize_t i, j, n
        Balancer.__init__(self, nodes)
        self.key_of = key_of
        weights = [max((<UpstreamNode>node).weight, 0) for node in self.nodes]
        unit = math.gcd(*weights) or 1  # weights 100, 200 are 1, 2
        weights = [w // unit for w in weights]
        total = sum(weights) or 1
        per_unit = min(CHASH_POINTS, max(CHASH_MAX_POINTS // total, 1))
        ring = []
        for i in range(self.count):
            node = <UpstreamNode>self.nodes[i]
            label = f"{node.host}:{node.port}#".encode()
            n = per_unit * weights[i] if weights[i] else 0
            for j in range(n):
                ring.append((hash_text(label + str(j).encode()), i))
        ring.sort()
        self.size = len(ring)
        self.points = <uint64_t *>PyMem_Malloc(max(self.size, 1) * sizeof(uint64_t))
        self.owners = <int *>PyMem_Malloc(max(self.size, 1) * sizeof(int))
        if self.points == NULL or self.owners == NULL:
            raise MemoryError()
        for i in range(self.size):
            self.points[i] = ring[i][0]
            self.owners[i] = ring[i][1]

    def __dealloc__(self):
        PyMem_Free(self.points)
        PyMem_Free(self.owners)

    cdef UpstreamNode pick(self, Exchange ex, set exclude):
        cdef uint64_t h = ex.balance_hash(self.key_of) if ex is not None else 0
        return self.lookup(h, exclude)

    cdef UpstreamNode lookup(self, uint64_t h, set exclude):
        cdef Py_ssize_t lo = 0, hi = self.size, mid, k, i
        cdef UpstreamNode node
        if self.size == 0:
            return None
        if exclude is not None:
            for i in range(self.count):
                if self.usable(<UpstreamNode>self.nodes[i], exclude):
                    break
            else:
                return None  # no usable node: do not walk the whole ring to find out
        while lo < hi:  # the first point >= h
            mid = (lo + hi) >> 1
            if self.points[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        for k in range(self.size):
            i = lo + k
            while i >= self.size:
                i -= self.size
            node = <UpstreamNode>self.nodes[self.owners[i]]
            if self.usable(node, exclude):
                return node
        return None

    def node_for(self, key, set exclude=None):
        """The node a key (text or bytes) maps to: the ring seen from Python, for tests."""
        return self.lookup(hash_text(key), exclude)


cdef class EwmaBalancer(Balancer):
    """Peak-EWMA (Finagle's, APISIX's ewma): each node keeps a moving average of its response
    time that jumps up at once to a slower response and decays towards faster ones (and towards
    0 while the node is not used, so it is tried again), over ``decay_time`` seconds. Its cost is
    that average times (requests in flight + 1); a pick compares two distinct random usable nodes
    (power of two choices) and takes the cheaper. Weights are not used (as in APISIX)."""

    def __init__(self, nodes, double decay_time=10.0):
        cdef Py_ssize_t i
        Balancer.__init__(self, nodes)
        self.decay_time = decay_time
        self.ewma = <double *>PyMem_Malloc(max(self.count, 1) * sizeof(double))
        self.stamp = <double *>PyMem_Malloc(max(self.count, 1) * sizeof(double))
        if self.ewma == NULL or self.stamp == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.ewma[i] = 0.0
            self.stamp[i] = 0.0
        self.rng = mix64(<uint64_t>id(self) ^ <uint64_t>(now_monotonic() * 1e9)) | 1

    def __dealloc__(self):
        PyMem_Free(self.ewma)
        PyMem_Free(self.stamp)

    cdef uint64_t next_random(self):
        cdef uint64_t x = self.rng
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        self.rng = x
        return x

    cdef double score(self, Py_ssize_t i, double now):
        cdef UpstreamNode node = <UpstreamNode>self.nodes[i]
        cdef double cost = self.ewma[i]
        if cost > 0.0 and now > self.stamp[i]:
            cost *= exp(-(now - self.stamp[i]) / self.decay_time)
        if cost == 0.0 and node.active > 0:
            return EWMA_PENALTY + node.active
        return cost * (node.active + 1)

    cdef UpstreamNode pick(self, Exchange ex, set exclude):
        cdef Py_ssize_t a, b, i, best = -1
        cdef double now, s, best_score = 0.0
        if self.count == 0:
            return None
        if self.count == 1:
            return <UpstreamNode>self.nodes[0] if self.usable(
                <UpstreamNode>self.nodes[0], exclude) else None
        now = now_monotonic()
        a = <Py_ssize_t>(self.next_random() % <uint64_t>self.count)
        b = <Py_ssize_t>(self.next_random() % <uint64_t>(self.count - 1))
        if b >= a:
            b += 1
        if self.usable(<UpstreamNode>self.nodes[a], exclude) and \
                self.usable(<UpstreamNode>self.nodes[b], exclude):
            return <UpstreamNode>self.nodes[a if self.score(a, now) <= self.score(b, now) else b]
        for i in range(self.count):  # some nodes excluded: the cheapest usable one
            if not self.usable(<UpstreamNode>self.nodes[i], exclude):
                continue
            s = self.score(i, now)
            if best < 0 or s < best_score:
                best = i
                best_score = s
        return <UpstreamNode>self.nodes[best] if best >= 0 else None

    cdef void observe(self, UpstreamNode node, double seconds, double now):
        cdef Py_ssize_t i = self.index_of(node)
        cdef double w, decayed
        if i < 0:
            return
        if seconds < 0.0:
            seconds = 0.0
        w = exp(-(now - self.stamp[i]) / self.decay_time) if now > self.stamp[i] else 1.0
        decayed = self.ewma[i] * w
        # peak sensitivity: a slower response counts in full at once; faster ones blend in
        self.ewma[i] = seconds if seconds > decayed else decayed + seconds * (1.0 - w)
        self.stamp[i] = now

    def cost(self, UpstreamNode node):
        """A node's current cost (decayed average x (in flight + 1)), seconds; for tests."""
        cdef Py_ssize_t i = self.index_of(node)
        return self.score(i, now_monotonic()) if i >= 0 else None

    def record(self, UpstreamNode node, double seconds):
        """Records a response time as the exchange does (for tests)."""
        self.observe(node, seconds, now_monotonic())
