/*
 * Starts Debian's JMeter 2.13 with XStream allowed to load JMeter's own classes.
 *
 * Debian builds JMeter 2.13 against its current XStream (1.4.18 or later), whose security
 * framework forbids every type that is not explicitly allowed. JMeter 2.13 predates that
 * framework and never allows anything, so loading any .jmx fails with
 * "ForbiddenClassException: org.apache.jmeter.save.ScriptWrapper".
 *
 * SaveService keeps its two XStream instances in private static final fields (JMXSAVER for
 * test plans, JTLSAVER for XML results). They are created in SaveService's static initializer,
 * which reads a few JMeter properties (file_format*, saveservice_properties), so this launcher
 *   1. loads jmeter.properties (and user.properties, -p/-q files, -J overrides and the -j log
 *      file) the way JMeter will, so that the initializer sees the same values,
 *   2. initializes SaveService and calls addPermission(AnyTypePermission.ANY) on both XStream
 *      instances through reflection (only the objects are changed, never the fields),
 *   3. hands the untouched arguments to org.apache.jmeter.JMeter#start, as NewDriver would.
 *
 * Run it with jmeter.home set and every jar of lib/, lib/ext/ and bin/ApacheJMeter.jar on the
 * class path (ops/jmeter does that). Newer JMeter releases allow their own types already and
 * need none of this.
 */

import com.thoughtworks.xstream.XStream;
import com.thoughtworks.xstream.security.AnyTypePermission;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.Properties;

public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        String home = System.getProperty("jmeter.home");
        if (home == null || !new File(home, "bin/jmeter.properties").isFile()) {
            System.err.println("Launcher: -Djmeter.home must point at a JMeter installation"
                    + " (bin/jmeter.properties not found under " + home + ")");
            System.exit(2);
        }
        preloadProperties(home, args);
        allowAllTypes();
        Thread.currentThread().setContextClassLoader(Launcher.class.getClassLoader());
        new org.apache.jmeter.JMeter().start(args);
    }

    /** Loads the properties SaveService's static initializer reads, as JMeter itself will. */
    private static void preloadProperties(String home, String[] args) throws IOException {
        org.apache.jmeter.util.JMeterUtils.setJMeterHome(home);
        String propFile = home + File.separator + "bin" + File.separator + "jmeter.properties";
        for (int i = 0; i < args.length - 1; i++) {
            if (args[i].equals("-p") || args[i].equals("--propfile")) {
                propFile = args[i + 1];
            }
        }
        org.apache.jmeter.util.JMeterUtils.loadJMeterProperties(propFile);
        Properties props = org.apache.jmeter.util.JMeterUtils.getJMeterProperties();
        File user = new File(home, "bin" + File.separator
                + props.getProperty("user.properties", "user.properties"));
        mergeFile(props, user);
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if ((a.equals("-q") || a.equals("--addprop")) && i + 1 < args.length) {
                mergeFile(props, new File(args[++i]));
            } else if (a.startsWith("-J") && a.length() > 2) {
                setPair(props, a.substring(2));
            } else if (a.equals("-J") && i + 1 < args.length) {
                setPair(props, args[++i]);
            } else if (a.startsWith("--jmeterproperty=")) {
                setPair(props, a.substring("--jmeterproperty=".length()));
            } else if ((a.equals("-j") || a.equals("--jmeterlogfile")) && i + 1 < args.length) {
                props.setProperty("log_file", args[++i]);
            }
        }
        // Send what SaveService logs while it initializes to JMeter's log file, not stdout;
        // JMeter sets logging up again from the same properties when it starts.
        org.apache.jmeter.util.JMeterUtils.initLogging();
    }

    private static void mergeFile(Properties props, File file) throws IOException {
        if (!file.isFile()) {
            return;
        }
        try (InputStream in = new FileInputStream(file)) {
            props.load(in);
        }
    }

    private static void setPair(Properties props, String pair) {
        int eq = pair.indexOf('=');
        if (eq > 0) {
            props.setProperty(pair.substring(0, eq), pair.substring(eq + 1));
        }
    }

    /**
     * Grants AnyTypePermission to every static XStream of SaveService: in 2.13 these are
     * JMXSAVER (test plans) and JTLSAVER (XML results).
     */
    private static void allowAllTypes() throws ReflectiveOperationException {
        Class<?> saveService = Class.forName(
                "org.apache.jmeter.save.SaveService", true, Launcher.class.getClassLoader());
        int granted = 0;
        for (Field field : saveService.getDeclaredFields()) {
            if (!Modifier.isStatic(field.getModifiers())
                    || !XStream.class.isAssignableFrom(field.getType())) {
                continue;
            }
            field.setAccessible(true);
            XStream xstream = (XStream) field.get(null);
            if (xstream != null) {
                xstream.addPermission(AnyTypePermission.ANY);
                granted++;
            }
        }
        if (granted == 0) {
            throw new IllegalStateException("org.apache.jmeter.save.SaveService holds no static"
                    + " XStream; this launcher is for JMeter 2.13 (use a JMeter 5.x directly)");
        }
    }
}
