// Drives VNPT's unchanged SDKVXP 2.0.1 and EdXML102 jars for docbroker's interop tests.
//
// One JSON command per line on stdin, one JSON answer per line on stdout. The SDK
// prints its own debugging to System.out, so that stream is sent to stderr and the
// answers go to the original stdout. A "connect" command makes a KnobstickServiceImp
// and an AgencyServiceImp (each keeps its own parameter map and the timestamp it was
// built with, as a long-running agency system's objects do); later calls reuse them,
// so parameters left over from earlier calls travel on, exactly as in production.
//
// Answers are the SDK's own result objects serialised by gson; a null result (the
// SDK's way of saying it could not read the answer) is {"result": null}. Large
// getEdoc data is replaced by its length and SHA-256.

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.vnpt.xml.base.Content;
import com.vnpt.xml.base.attachment.Attachment;
import com.vnpt.xml.base.header.Header;
import com.vnpt.xml.base.header.Organization;
import com.vnpt.xml.base.header.ResponseFor;
import com.vnpt.xml.base.header.StaffInfo;
import com.vnpt.xml.base.header.TraceHeader;
import com.vnpt.xml.base.header.TraceHeaderList;
import com.vnpt.xml.ed.Ed;
import com.vnpt.xml.ed.builder.EdXmlBuilder;
import com.vnpt.xml.ed.header.Code;
import com.vnpt.xml.ed.header.MessageHeader;
import com.vnpt.xml.ed.parser.EdXmlParser;
import com.vnpt.xml.status.Status;
import com.vnpt.xml.status.builder.StatusXmlBuilder;
import com.vnpt.xml.status.header.MessageStatus;
import com.vnpt.xml.status.parser.StatusXmlParser;
import com.vpcp.services.AgencyServiceImp;
import com.vpcp.services.KnobstickServiceImp;
import com.vpcp.services.VnptProperties;
import com.vpcp.services.model.GetEdocResult;
import java.io.BufferedReader;
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;

public class SdkHarness {
    private static final Gson GSON = new GsonBuilder().serializeNulls().create();
    private static KnobstickServiceImp knobstick;
    private static AgencyServiceImp agencies;

    public static void main(String[] args) throws Exception {
        PrintStream answers = new PrintStream(System.out, true, "UTF-8");
        System.setOut(System.err); // the SDK's println debugging
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().isEmpty()) {
                continue;
            }
            JsonObject answer;
            try {
                answer = run(new JsonParser().parse(line).getAsJsonObject());
            } catch (Throwable exc) {
                exc.printStackTrace();
                answer = new JsonObject();
                answer.addProperty("harness_error", exc.toString());
            }
            answers.println(GSON.toJson(answer));
        }
    }

    private static String str(JsonObject cmd, String name) {
        JsonElement e = cmd.get(name);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    private static JsonObject wrap(Object result) {
        JsonObject out = new JsonObject();
        out.add("result", result == null ? null : GSON.toJsonTree(result));
        return out;
    }

    private static JsonObject run(JsonObject cmd) throws Exception {
        String op = str(cmd, "op");
        String params = str(cmd, "params") == null ? "{}" : str(cmd, "params");
        switch (op) {
            case "connect": {
                VnptProperties props = new VnptProperties(
                        str(cmd, "endpoint"), str(cmd, "systemid"), str(cmd, "secret"),
                        str(cmd, "store"), 10, 3);
                knobstick = new KnobstickServiceImp(props);
                agencies = new AgencyServiceImp(props);
                return wrap("connected");
            }
            case "sendEdoc":
                return wrap(knobstick.sendEdoc(params, str(cmd, "file")));
            case "getReceivedEdocList":
                return wrap(knobstick.getReceivedEdocList(params));
            case "getSentEdocList":
                return wrap(knobstick.getSentEdocList(params));
            case "getEdoc":
                return edoc(knobstick.getEdoc(params));
            case "downloadEdoc":
                return edoc(knobstick.downloadEdoc(params));
            case "updateStatus":
                return wrap(knobstick.updateStatus(params));
            case "countReceiveEdoc":
                return wrap(knobstick.countReceiveEdoc(params));
            case "countReceiveStatus":
                return wrap(knobstick.countReceiveStatus(params));
            case "getAgenciesList":
                return wrap(agencies.getAgenciesList(params));
            case "getAgenciesListQD20":
                return wrap(agencies.getAgenciesListQD20(params));
            case "getSynchronizeUnit":
                return wrap(agencies.getSynchronizeUnit(params));
            case "registerAgency":
                return wrap(agencies.registerAgency(params, str(cmd, "data")));
            case "deleteAgency":
                return wrap(agencies.deleteAgency(params));
            case "parseEdoc":
                return parseEdoc(new File(str(cmd, "file")));
            case "parseStatus":
                return parseStatus(new File(str(cmd, "file")));
            case "buildEdoc":
                return buildEdoc(cmd);
            case "buildStatus":
                return buildStatus(cmd);
            default:
                throw new IllegalArgumentException("unknown op " + op);
        }
    }

    private static String sha256(byte[] data) throws Exception {
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        StringBuilder sb = new StringBuilder();
        for (byte b : digest) {
            sb.append(String.format("%02x", b & 0xff));
        }
        return sb.toString();
    }

    private static JsonObject edoc(GetEdocResult result) throws Exception {
        JsonObject out = new JsonObject();
        if (result == null) {
            out.add("result", null);
            return out;
        }
        String data = result.getData();
        result.setData(null);
        JsonObject tree = GSON.toJsonTree(result).getAsJsonObject();
        if (data != null) {
            byte[] bytes = data.getBytes(StandardCharsets.UTF_8);
            tree.addProperty("data_length", bytes.length);
            tree.addProperty("data_sha256", sha256(bytes));
        }
        String path = result.getFilePath();
        if (path != null && !path.isEmpty() && new File(path).isFile()) {
            tree.addProperty("file_sha256", sha256(Files.readAllBytes(new File(path).toPath())));
        }
        out.add("result", tree);
        return out;
    }

    private static String stamp(Date d) {
        return d == null ? null : new SimpleDateFormat("yyyy/MM/dd HH:mm:ss").format(d);
    }

    private static JsonObject organization(Organization o) {
        JsonObject out = new JsonObject();
        if (o == null) {
            return null;
        }
        out.addProperty("OrganId", o.getOrganId());
        out.addProperty("OrganName", o.getOrganName());
        return out;
    }

    private static void traces(JsonObject out, Header header) {
        JsonArray traces = new JsonArray();
        TraceHeaderList list = header.getTraceHeaderList();
        if (list != null && list.getTraceHeaders() != null) {
            for (TraceHeader t : list.getTraceHeaders()) {
                JsonObject item = new JsonObject();
                item.addProperty("OrganId", t.getOrganId());
                item.addProperty("Timestamp", stamp(t.getTimestamp()));
                traces.add(item);
            }
        }
        out.add("TraceHeaders", traces);
        out.addProperty("signature", header.getSignature() != null);
    }

    private static JsonObject parseEdoc(File file) throws Exception {
        Ed ed = EdXmlParser.getInstance().parse(new FileInputStream(file));
        JsonObject out = new JsonObject();
        MessageHeader mh = (MessageHeader) ed.getHeader().getMessageHeader();
        out.add("From", organization(mh.getFrom()));
        JsonArray to = new JsonArray();
        if (mh.getToes() != null) {
            for (Organization o : mh.getToes()) {
                to.add(organization(o));
            }
        }
        out.add("To", to);
        out.addProperty("DocumentId", mh.getDocumentId());
        if (mh.getCode() != null) {
            out.addProperty("CodeNumber", mh.getCode().getCodeNumber());
            out.addProperty("CodeNotation", mh.getCode().getCodeNotation());
        }
        out.addProperty("Subject", mh.getSubject());
        traces(out, ed.getHeader());
        JsonArray attachments = new JsonArray();
        if (ed.getAttachments() != null) {
            for (Attachment a : ed.getAttachments()) {
                JsonObject item = new JsonObject();
                item.addProperty("name", a.getName());
                item.addProperty("contentType", a.getContentType());
                File content = a.getContent();
                if (content != null && content.isFile()) {
                    byte[] bytes = Files.readAllBytes(content.toPath());
                    item.addProperty("length", bytes.length);
                    item.addProperty("sha256", sha256(bytes));
                }
                attachments.add(item);
            }
        }
        out.add("attachments", attachments);
        JsonObject wrapped = new JsonObject();
        wrapped.add("result", out);
        return wrapped;
    }

    private static JsonObject parseStatus(File file) throws Exception {
        Status status = StatusXmlParser.parse(new FileInputStream(file));
        MessageStatus ms = (MessageStatus) status.getHeader().getMessageHeader();
        JsonObject out = new JsonObject();
        out.add("From", organization(ms.getFrom()));
        ResponseFor rf = ms.getResponseFor();
        if (rf != null) {
            out.addProperty("ResponseForOrganId", rf.getOrganId());
            out.addProperty("ResponseForDocumentId", rf.getDocumentId());
            out.addProperty("ResponseForCode", rf.getCode());
        }
        out.addProperty("StatusCode", ms.getStatusCode());
        out.addProperty("Description", ms.getDescription());
        out.addProperty("Timestamp", stamp(ms.getTimestamp()));
        traces(out, status.getHeader());
        JsonObject wrapped = new JsonObject();
        wrapped.add("result", out);
        return wrapped;
    }

    private static Organization org(JsonObject cmd, String name) {
        JsonObject o = cmd.getAsJsonObject(name);
        return new Organization(str(o, "OrganId"), str(o, "OrganName"), str(o, "OrganAdd"));
    }

    private static JsonObject built(Content content) {
        JsonObject out = new JsonObject();
        out.addProperty("file", content.getContent().getPath());
        out.addProperty("sha256", content.getHashCode());
        JsonObject wrapped = new JsonObject();
        wrapped.add("result", out);
        return wrapped;
    }

    private static JsonObject buildEdoc(JsonObject cmd) throws Exception {
        MessageHeader mh = new MessageHeader();
        mh.setFrom(org(cmd, "From"));
        for (JsonElement e : cmd.getAsJsonArray("To")) {
            JsonObject o = e.getAsJsonObject();
            mh.addTo(new Organization(str(o, "OrganId"), str(o, "OrganName"), str(o, "OrganAdd")));
        }
        mh.setDocumentId(str(cmd, "DocumentId"));
        mh.setCode(new Code(str(cmd, "CodeNumber"), str(cmd, "CodeNotation")));
        mh.setSubject(str(cmd, "Subject"));
        mh.setContent(str(cmd, "Content"));
        TraceHeaderList traces = new TraceHeaderList();
        traces.addTraceHeader(new TraceHeader(str(cmd.getAsJsonObject("From"), "OrganId"), new Date()));
        List<Attachment> attachments = new ArrayList<>();
        if (cmd.has("attachments")) {
            for (JsonElement e : cmd.getAsJsonArray("attachments")) {
                attachments.add(new Attachment(null, new File(e.getAsString())));
            }
        }
        Ed ed = new Ed(new Header(mh, traces), attachments);
        return built(EdXmlBuilder.build(ed, str(cmd, "dir")));
    }

    private static JsonObject buildStatus(JsonObject cmd) throws Exception {
        MessageStatus ms = new MessageStatus();
        ms.setFrom(org(cmd, "From"));
        ms.setResponseFor(new ResponseFor(
                str(cmd, "ResponseForOrganId"), str(cmd, "ResponseForCode"), new Date(),
                str(cmd, "ResponseForDocumentId")));
        ms.setStatusCode(str(cmd, "StatusCode"));
        ms.setDescription(str(cmd, "Description"));
        ms.setTimestamp(new Date());
        ms.setStaffInfo(new StaffInfo("Văn thư", "Nguyễn Văn A"));
        TraceHeaderList traces = new TraceHeaderList();
        traces.addTraceHeader(new TraceHeader(str(cmd.getAsJsonObject("From"), "OrganId"), new Date()));
        Status status = new Status(new Header(ms, traces));
        return built(StatusXmlBuilder.build(status, str(cmd, "dir")));
    }
}
