// The Kafka Streams peer of `make bench` (bench/peers/CONTRACT.md), started by job.py.
//
// One Kafka Streams application (application.id = BENCH_GROUP, so its offsets are committed
// to that group, where the harness polls them) with two branches on the input stream:
//
//   per user: the input is keyed by user id, so groupByKey needs no repartition;
//   per url:  re-keyed by url through an exchange (below), then groupByKey.
//
// The exchange. Stream time is per task, and Kafka Streams does not keep its tasks in step:
// on a pre-loaded topic the input tasks advance at about the same number of records each,
// so a partition with fewer events runs ahead in event time (the bench input's partitions
// differ by ~25 %: 20+ s apart within 100k events, minutes within 1M). A plain groupBy
// repartition topic mixes all input tasks in processing order, so the url windows' stream
// time follows the input task that is furthest ahead and the others' events arrive behind
// the 10 s grace: in a trial, 60 % of them were dropped as late. So the url branch writes
// each input partition's events to a topic of its own (BENCH_GROUP-urls-from-<partition>,
// each partitioned by url like a repartition topic, created and deleted by this job) and
// reads all of them back as one stream: the task of url partition j then reads partition j of
// every such topic, and Kafka Streams merges a task's partitions by timestamp, waiting up to
// max.task.idle.ms for one that is empty (task idling, KIP-353/KIP-695). The url windows see
// the input tasks' events merged in event-time order, as behind a watermark.
//
// Each branch is a tumbling window of BENCH_WINDOW_MS with a grace of BENCH_LATENESS_MS,
// aggregated into a small state object, and only its final result is emitted:
// suppress(untilWindowCloses). (The other way, the emit strategy onWindowClose, checks for
// closed windows at most once a second of wall-clock time, so at the end of a fast bounded
// run the windows closed in its last second would never be emitted.) Event time is `ts`,
// parsed once by the value deserializer and handed to Kafka Streams by a TimestampExtractor;
// stream time, and so window closing, is per task (per partition).
//
// The input ends at its end offsets as of the start: the job is done when the group's
// committed offsets of the input topic have reached them (Kafka Streams commits every
// commit.interval.ms) and every record written to the url topics has been read back
// and aggregated. Then close() commits the last transaction (flushing the caches, so the
// windows that stream time closed are emitted) and the job deletes its local state, its url
// topics and the changelog topics Kafka Streams made.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

public final class ClickstreamJob {
    static final ObjectMapper JSON = new ObjectMapper();
    static final long POLL_MS = 50;
    static final long STALL_GUARD_MS = 120_000; // fail when nothing moved for this long
    // How long a url task waits for a partition with nothing buffered before it goes on with
    // the others (max.task.idle.ms, default 0: only while a fetch is known to be pending).
    // The input tasks write their url topics in transactions committed every 100 ms, so a
    // partition that is empty for longer than this has really nothing more (the end).
    static final long TASK_IDLE_MS = 1000;

    // Progress of the url branch: records written to its url topics / read back from them.
    static final AtomicLong SENT = new AtomicLong();
    static final AtomicLong READ_BACK = new AtomicLong();

    // ---------------------------------------------------------------- the event

    /** One click event, as parsed from the input's JSON value. */
    static final class Event {
        String userId;
        String eventType;
        String url;
        String sessionId; // null when absent or empty
        long ts; // event time, epoch ms
    }

    static String text(JsonNode node, String field) {
        JsonNode v = node.get(field);
        return v != null && v.isTextual() ? v.textValue() : null;
    }

    /** `ts`: integer epoch ms, or an RFC 3339 string with an offset (Z or +hh:mm). */
    static long eventTime(JsonNode ts) {
        if (ts != null && ts.isIntegralNumber()) {
            return ts.asLong();
        }
        if (ts != null && ts.isTextual()) {
            try {
                return OffsetDateTime.parse(ts.textValue()).toInstant().toEpochMilli();
            } catch (DateTimeParseException e) {
                throw new SerializationException("bad ts: " + ts.textValue());
            }
        }
        throw new SerializationException("no usable ts");
    }

    /**
     * An event from JSON: the input's values, and (as EventSerializer wrote them) the url
     * branch's url topics. A value that is not a usable event throws, and the
     * LogAndContinue deserialization handler skips it.
     */
    static final class EventDeserializer implements Deserializer<Event> {
        @Override
        public Event deserialize(String topic, byte[] data) {
            if (data == null) {
                return null;
            }
            JsonNode node;
            try {
                node = JSON.readTree(data);
            } catch (IOException e) {
                throw new SerializationException("not JSON", e);
            }
            if (node == null || !node.isObject()) {
                throw new SerializationException("not a JSON object");
            }
            Event e = new Event();
            e.userId = text(node, "user_id");
            e.eventType = text(node, "event_type");
            e.url = text(node, "url");
            if (e.userId == null || e.eventType == null || e.url == null) {
                throw new SerializationException("missing user_id, event_type or url");
            }
            String sid = text(node, "session_id");
            e.sessionId = sid == null || sid.isEmpty() ? null : sid;
            e.ts = eventTime(node.get("ts"));
            return e;
        }
    }

    /** An event as JSON, for the url topics (ts as epoch ms). */
    static final class EventSerializer implements Serializer<Event> {
        @Override
        public byte[] serialize(String topic, Event e) {
            if (e == null) {
                return null;
            }
            ObjectNode node = JSON.createObjectNode();
            node.put("user_id", e.userId);
            node.put("event_type", e.eventType);
            node.put("url", e.url);
            node.put("ts", e.ts);
            if (e.sessionId != null) {
                node.put("session_id", e.sessionId);
            }
            return json(node);
        }
    }

    /** The event time the deserializer parsed (the input only: internal topics carry it on). */
    public static final class EventTimeExtractor implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            Object value = record.value();
            return value instanceof Event ? ((Event) value).ts : -1; // negative: skipped
        }
    }

    // ---------------------------------------------------------------- the window states

    static final class UserWindow {
        long events;
        long pageViews;
        long clicks;
        final Set<String> pages = new HashSet<>();
        final Set<String> sessions = new HashSet<>();

        UserWindow add(Event e) {
            events++;
            if ("page_view".equals(e.eventType)) {
                pageViews++;
            } else if ("click".equals(e.eventType)) {
                clicks++;
            }
            pages.add(e.url);
            if (e.sessionId != null) {
                sessions.add(e.sessionId);
            }
            return this;
        }
    }

    static final class UrlWindow {
        long events;
        long views;
        final Set<String> users = new HashSet<>();

        UrlWindow add(Event e) {
            events++;
            if ("page_view".equals(e.eventType)) {
                views++;
            }
            users.add(e.userId);
            return this;
        }
    }

    /** A compact binary serde for a window state (the stores and their changelogs hold it). */
    interface Writer<T> {
        void write(T value, DataOutputStream out) throws IOException;
    }

    interface Reader<T> {
        T read(DataInputStream in) throws IOException;
    }

    static <T> Serde<T> binarySerde(Writer<T> writer, Reader<T> reader) {
        return Serdes.serdeFrom(
                (topic, value) -> {
                    if (value == null) {
                        return null;
                    }
                    ByteArrayOutputStream bytes = new ByteArrayOutputStream(64);
                    try (DataOutputStream out = new DataOutputStream(bytes)) {
                        writer.write(value, out);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                    return bytes.toByteArray();
                },
                (topic, data) -> {
                    if (data == null) {
                        return null;
                    }
                    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(data))) {
                        return reader.read(in);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                });
    }

    static void writeSet(Set<String> set, DataOutputStream out) throws IOException {
        out.writeInt(set.size());
        for (String s : set) {
            out.writeUTF(s);
        }
    }

    static void readSet(Set<String> set, DataInputStream in) throws IOException {
        for (int n = in.readInt(); n > 0; n--) {
            set.add(in.readUTF());
        }
    }

    static final Serde<UserWindow> USER_WINDOW = binarySerde(
            (w, out) -> {
                out.writeLong(w.events);
                out.writeLong(w.pageViews);
                out.writeLong(w.clicks);
                writeSet(w.pages, out);
                writeSet(w.sessions, out);
            },
            in -> {
                UserWindow w = new UserWindow();
                w.events = in.readLong();
                w.pageViews = in.readLong();
                w.clicks = in.readLong();
                readSet(w.pages, in);
                readSet(w.sessions, in);
                return w;
            });

    static final Serde<UrlWindow> URL_WINDOW = binarySerde(
            (w, out) -> {
                out.writeLong(w.events);
                out.writeLong(w.views);
                writeSet(w.users, out);
            },
            in -> {
                UrlWindow w = new UrlWindow();
                w.events = in.readLong();
                w.views = in.readLong();
                readSet(w.users, in);
                return w;
            });

    // ---------------------------------------------------------------- the output records

    static byte[] json(ObjectNode node) {
        try {
            return JSON.writeValueAsBytes(node);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static byte[] userRecord(Windowed<String> key, UserWindow w) {
        ObjectNode node = JSON.createObjectNode();
        node.put("user_id", key.key());
        node.put("window_start", key.window().start());
        node.put("events", w.events);
        node.put("page_views", w.pageViews);
        node.put("clicks", w.clicks);
        node.put("unique_pages", w.pages.size());
        node.put("sessions", w.sessions.size());
        return json(node);
    }

    static byte[] urlRecord(Windowed<String> key, UrlWindow w) {
        ObjectNode node = JSON.createObjectNode();
        node.put("url", key.key());
        node.put("window_start", key.window().start());
        node.put("events", w.events);
        node.put("views", w.views);
        node.put("unique_users", w.users.size());
        return json(node);
    }

    // ---------------------------------------------------------------- the topology

    static StreamsBuilder topology(Map<String, String> env, List<String> urlTopics) {
        Serde<String> strings = Serdes.String();
        Serde<Event> events = Serdes.serdeFrom(new EventSerializer(), new EventDeserializer());
        TimeWindows windows = TimeWindows.ofSizeAndGrace(
                Duration.ofMillis(Long.parseLong(env.getOrDefault("BENCH_WINDOW_MS", "5000"))),
                Duration.ofMillis(Long.parseLong(env.getOrDefault("BENCH_LATENESS_MS", "10000"))));

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, Event> clicks = builder.stream(
                need(env, "BENCH_INPUT_TOPIC"),
                Consumed.with(strings, events).withTimestampExtractor(new EventTimeExtractor()));

        // Per user: already keyed by user id, so no repartition.
        clicks.groupByKey(Grouped.with(strings, events))
                .windowedBy(windows)
                .aggregate(UserWindow::new, (user, e, w) -> w.add(e),
                        Materialized.<String, UserWindow, WindowStore<Bytes, byte[]>>as("per-user")
                                .withKeySerde(strings).withValueSerde(USER_WINDOW))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                        .withName("per-user-final"))
                .toStream()
                .map((key, w) -> KeyValue.pair(key.key(), userRecord(key, w)))
                .to(need(env, "BENCH_USER_TOPIC"), Produced.with(strings, Serdes.ByteArray()));

        // Per url: each input partition's events re-keyed by url into its own topic, all of
        // them read back as one stream merged by timestamp (the exchange, see the top).
        clicks.peek((user, e) -> SENT.incrementAndGet(), Named.as("count-sent"))
                .selectKey((user, e) -> e.url)
                .to((url, e, context) -> urlTopics.get(context.partition()),
                        Produced.with(strings, events));
        builder.stream(urlTopics, Consumed.with(strings, events)) // time: the record's, the event's
                .peek((url, e) -> READ_BACK.incrementAndGet(), Named.as("count-read-back"))
                .groupByKey(Grouped.with(strings, events))
                .windowedBy(windows)
                .aggregate(UrlWindow::new, (url, e, w) -> w.add(e),
                        Materialized.<String, UrlWindow, WindowStore<Bytes, byte[]>>as("per-url")
                                .withKeySerde(strings).withValueSerde(URL_WINDOW))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                        .withName("per-url-final"))
                .toStream()
                .map((key, w) -> KeyValue.pair(key.key(), urlRecord(key, w)))
                .to(need(env, "BENCH_PAGE_TOPIC"), Produced.with(strings, Serdes.ByteArray()));
        return builder;
    }

    static Properties config(Map<String, String> env, Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(env, "BENCH_GROUP"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(env, "BENCH_BROKERS"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100); // the EOS default, stated
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1); // one process, one thread, as ours
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
                LogAndContinueExceptionHandler.class.getName());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, TASK_IDLE_MS); // the url exchange's merge
        // Default 500 ms. The consumer has one fetch in flight per broker; once the input is
        // read, that fetch holds only drained partitions and waits the full time, and the url
        // topics' partitions that Kafka Streams paused (over 1,000 buffered records) and then
        // resumed are fetched only after it, which slows reading back the url backlog left at
        // the end of the input (one trial of 100k events: 35 s wall at 500 ms, 25 s at 100 ms).
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG), 100);
        return p;
    }

    // ---------------------------------------------------------------- the bounded run

    public static void main(String[] args) throws Exception {
        Map<String, String> env = System.getenv();
        String group = need(env, "BENCH_GROUP");
        String input = need(env, "BENCH_INPUT_TOPIC");
        Path stateDir = Paths.get(args.length > 0 ? args[0] : ".local/bench/kstreams/state-" + group)
                .toAbsolutePath();
        int status;
        Properties adminConfig = new Properties();
        adminConfig.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, need(env, "BENCH_BROKERS"));
        try (Admin admin = Admin.create(adminConfig)) {
            Map<TopicPartition, Long> ends = endOffsets(admin, input);
            long started = System.currentTimeMillis();
            List<String> urlTopics = createUrlTopics(admin, group, ends.size());
            KafkaStreams streams = new KafkaStreams(topology(env, urlTopics).build(),
                    config(env, stateDir));
            AtomicReference<Throwable> failure = new AtomicReference<>();
            streams.setUncaughtExceptionHandler(e -> {
                failure.compareAndSet(null, e);
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            if ("1".equals(env.get("BENCH_LIVE"))) {
                runLive(streams, failure, stateDir, admin, group, urlTopics);
                return; // the JVM is shutting down
            }
            streams.start();
            status = waitUntilDone(admin, streams, group, ends, failure);
            long done = System.currentTimeMillis();
            String dropped = droppedRecords(streams);
            boolean closed = streams.close(Duration.ofSeconds(60)); // commits the last transaction
            long closedAt = System.currentTimeMillis();
            deleteTree(stateDir); // (KafkaStreams.cleanUp() would warn that it is not empty)
            deleteTopics(admin, group, urlTopics);
            System.err.printf("kstreams peer: %s; %d records read back from the url topics (%d sent); "
                    + "dropped records %s; done %.2f s after the start, closed %.2f s later%s%n",
                    status == 0 ? "done" : "FAILED", READ_BACK.get(), SENT.get(), dropped,
                    (done - started) / 1000.0, (closedAt - done) / 1000.0,
                    closed ? "" : " (close timed out)");
            if (!closed) {
                status = 1;
            }
        }
        System.exit(status);
    }

    /** BENCH_LIVE=1 (bench/live.py): unbounded, until SIGTERM; then close() commits the last
     * transaction and the local state and url topics go. Returns once that is done; exits 1
     * if the application fails. */
    static void runLive(KafkaStreams streams, AtomicReference<Throwable> failure, Path stateDir,
                        Admin admin, String group, List<String> urlTopics) throws InterruptedException {
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            deleteTree(stateDir);
            deleteTopics(admin, group, urlTopics);
            stopped.countDown();
        }));
        streams.start();
        while (true) {
            KafkaStreams.State state = streams.state();
            if (failure.get() != null || state == KafkaStreams.State.ERROR
                    || state == KafkaStreams.State.NOT_RUNNING) {
                System.err.println("kstreams peer: the application stopped (" + state + "): " + failure.get());
                System.exit(1);
            }
            if (stopped.await(POLL_MS, TimeUnit.MILLISECONDS)) {
                return;
            }
        }
    }

    /** Waits until the input's committed offsets reach `ends` and the url branch has read back
     * all it sent; 0 then, 1 when the application failed or stalled. */
    static int waitUntilDone(Admin admin, KafkaStreams streams, String group,
                             Map<TopicPartition, Long> ends, AtomicReference<Throwable> failure)
            throws InterruptedException {
        long lastMove = System.currentTimeMillis();
        long lastSeen = -1;
        while (true) {
            KafkaStreams.State state = streams.state();
            if (failure.get() != null || state == KafkaStreams.State.ERROR
                    || state == KafkaStreams.State.PENDING_ERROR
                    || state == KafkaStreams.State.NOT_RUNNING
                    || state == KafkaStreams.State.PENDING_SHUTDOWN) {
                System.err.println("kstreams peer: the application stopped (" + state + "): " + failure.get());
                return 1;
            }
            long committed = committedInput(admin, group, ends);
            boolean inputDone = committed >= ends.values().stream().mapToLong(Long::longValue).sum();
            if (inputDone && READ_BACK.get() >= SENT.get()) {
                return 0;
            }
            long seen = committed + SENT.get() + READ_BACK.get();
            long now = System.currentTimeMillis();
            if (seen != lastSeen) {
                lastSeen = seen;
                lastMove = now;
            } else if (now - lastMove > STALL_GUARD_MS) {
                System.err.println("kstreams peer: no progress for " + STALL_GUARD_MS / 1000 + " s");
                return 1;
            }
            Thread.sleep(POLL_MS);
        }
    }

    static Map<TopicPartition, Long> endOffsets(Admin admin, String topic) throws Exception {
        TopicDescription description = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        Map<TopicPartition, OffsetSpec> specs = description.partitions().stream()
                .collect(Collectors.toMap(p -> new TopicPartition(topic, p.partition()), p -> OffsetSpec.latest()));
        return admin.listOffsets(specs).all().get().entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
    }

    /** The group's committed offsets on the input, each capped at its end offset, summed. */
    static long committedInput(Admin admin, String group, Map<TopicPartition, Long> ends) {
        Map<TopicPartition, OffsetAndMetadata> committed;
        try {
            committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        } catch (Exception e) {
            return 0; // the group may not exist yet
        }
        long sum = 0;
        for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
            OffsetAndMetadata at = committed.get(end.getKey());
            // an empty partition has nothing to commit
            sum += end.getValue() == 0 ? 0 : at == null ? 0 : Math.min(at.offset(), end.getValue());
        }
        return sum;
    }

    /** Kafka Streams' dropped-records-total (late, unparsable, ...), per sub-topology. */
    static String droppedRecords(KafkaStreams streams) {
        Map<String, Double> bySubtopology = new HashMap<>();
        for (Map.Entry<MetricName, ? extends Metric> m : streams.metrics().entrySet()) {
            MetricName name = m.getKey();
            if (name.name().equals("dropped-records-total") && name.tags().containsKey("task-id")) {
                String task = name.tags().get("task-id");
                String subtopology = task.contains("_") ? task.substring(0, task.indexOf('_')) : task;
                Object value = m.getValue().metricValue();
                if (value instanceof Double) {
                    bySubtopology.merge("sub-topology " + subtopology, (Double) value, Double::sum);
                }
            }
        }
        return bySubtopology.isEmpty() ? "none reported" : bySubtopology.entrySet().stream()
                .sorted(Map.Entry.comparingByKey())
                .map(e -> e.getKey() + "=" + e.getValue().longValue())
                .collect(Collectors.joining(", "));
    }

    /** The url exchange's topics, one per input partition (index = input partition), each
     * with as many partitions as the input, keeping everything (the records carry event time,
     * which may be older than the broker's default retention). */
    static List<String> createUrlTopics(Admin admin, String group, int partitions) throws Exception {
        List<String> names = new ArrayList<>();
        List<NewTopic> topics = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            String name = group + "-urls-from-" + p;
            names.add(name);
            topics.add(new NewTopic(name, Optional.of(partitions), Optional.empty())
                    .configs(Map.of(TopicConfig.RETENTION_MS_CONFIG, "-1")));
        }
        admin.createTopics(topics).all().get();
        for (long deadline = System.currentTimeMillis() + 30_000; ; Thread.sleep(100)) {
            try {
                admin.describeTopics(names).allTopicNames().get();
                return names;
            } catch (ExecutionException e) {
                if (System.currentTimeMillis() > deadline) {
                    throw e;
                }
            }
        }
    }

    /** The url exchange's topics and the changelog topics Kafka Streams made for this run. */
    static void deleteTopics(Admin admin, String applicationId, List<String> urlTopics) {
        try {
            Set<String> doomed = admin.listTopics().names().get().stream()
                    .filter(t -> urlTopics.contains(t) || t.startsWith(applicationId + "-")
                            && (t.endsWith("-repartition") || t.endsWith("-changelog")))
                    .collect(Collectors.toSet());
            if (!doomed.isEmpty()) {
                admin.deleteTopics(doomed).all().get();
            }
        } catch (Exception e) {
            System.err.println("kstreams peer: could not delete the run's topics: " + e);
        }
    }

    static void deleteTree(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        } catch (IOException e) {
            System.err.println("kstreams peer: could not delete " + dir + ": " + e);
        }
    }

    static String need(Map<String, String> env, String name) {
        String value = env.get(name);
        if (value == null || value.isEmpty()) {
            System.err.println("kstreams peer: " + name + " is not set");
            System.exit(2);
        }
        return value;
    }
}
