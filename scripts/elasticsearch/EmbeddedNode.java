// A single-node Elasticsearch 7.17 started in-process from the Maven jars, for
// the monitoring/elastic integration tests (run by scripts/elasticsearch-local).
//
// Usage: java -cp 'libs/*:classes' EmbeddedNode HOME_DIR HTTP_PORT
//
// Why a Node subclass: Node's constructor that accepts classpath plugins is
// protected, and without Netty4Plugin on that list the node has no HTTP
// transport (the distribution loads it from modules/, which Maven lacks).
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.transport.Netty4Plugin;

public final class EmbeddedNode {
    static final class PluginNode extends Node {
        PluginNode(Settings settings, Collection<Class<? extends Plugin>> plugins) {
            super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "triage-local"),
                plugins, true);
        }
    }

    // A test that dies (a panic, SIGKILL) cannot stop the node it started:
    // with -Dembedded.parent.pid the node exits, cleanly, once that process
    // is gone, so no JVM outlives its test run.
    static void watchParent(String pid) {
        if (pid.isEmpty()) {
            return;
        }
        long p = Long.parseLong(pid);
        Thread t = new Thread(() -> {
            while (ProcessHandle.of(p).map(ProcessHandle::isAlive).orElse(false)) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                }
            }
            System.out.println("embedded-node: parent process " + p + " is gone, stopping");
            System.exit(0);
        }, "embedded-node-parent-watch");
        t.setDaemon(true);
        t.start();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: EmbeddedNode HOME_DIR HTTP_PORT");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
            .put("cluster.name", "triage-local")
            .put("node.name", "triage-local")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            // Nobody joins this node; any free port avoids clashes between runs.
            .put("transport.port", "0")
            .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
            .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
            // Test machines run with little free disk; a watermark would turn
            // indices read-only in the middle of a test.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            // Without a log4j2.properties only errors would reach the console;
            // the script passes ES_LOCAL_LOG_LEVEL (default INFO).
            .put("logger.level", System.getProperty("embedded.log.level", "INFO"))
            .build();
        // Console logging (stdout, captured into DIR/elasticsearch.log by the
        // script) without a log4j2.properties file.
        LogConfigurator.configureWithoutConfig(settings);

        Node node = new PluginNode(settings, List.of(Netty4Plugin.class));
        CountDownLatch closed = new CountDownLatch(1);
        // SIGTERM from `elasticsearch-local stop`: close the node so Lucene
        // commits and the translog is fsynced before the JVM exits.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "embedded-node-shutdown"));
        node.start();
        System.out.println("embedded-node: started, http 127.0.0.1:" + args[1]);
        watchParent(System.getProperty("embedded.parent.pid", ""));
        // The node's threads are daemons: without this wait the JVM would exit.
        closed.await();
    }
}
