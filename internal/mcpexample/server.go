// Package mcpexample is the MCP server of cmd/mcpca-example: a few tools,
// resources and prompts to protect, shared by the example binary, the
// adapter's end-to-end tests and its benchmark.
package mcpexample

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity/mcpauth"
)

// Tool, resource and prompt names of the example server.
const (
	ToolSearchDocs   = "search_docs"
	ToolGetWeather   = "get_weather"
	ToolWhoAmI       = "whoami"
	ToolDeleteRecord = "delete_record"

	ResourceHandbook = "docs://handbook"
	ResourceDocA     = "file:///docs/a.md"
	ResourceSecrets  = "file:///secrets/keys.txt"
	TemplateDocs     = "file:///docs/{name}"

	PromptSummarize = "summarize"
)

var docs = map[string]string{
	ResourceHandbook: "# Handbook\nBe kind. Rotate your certificates. Ask before deleting records.\n",
	ResourceDocA:     "# A\nThe first document: certificates carry roles, policies decide.\n",
	ResourceSecrets:  "root-password=hunter2\n",
}

// SearchArgs are the arguments of search_docs.
type SearchArgs struct {
	Query string `json:"query" jsonschema:"words to look for"`
}

// WeatherArgs are the arguments of get_weather.
type WeatherArgs struct {
	City string `json:"city" jsonschema:"the city"`
}

// DeleteArgs are the arguments of delete_record.
type DeleteArgs struct {
	ID string `json:"id" jsonschema:"the record to delete"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// NewServer returns the example MCP server, without any access control:
// install an mcpauth.Guard on it. It completes the uri argument of the
// summarize prompt and the name of the docs template, and accepts resource
// subscriptions (it never changes a resource, so it never notifies).
func NewServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpca-example", Version: "1.0.0"}, &mcp.ServerOptions{
		CompletionHandler:  complete,
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	mcp.AddTool(s, &mcp.Tool{Name: ToolSearchDocs, Description: "Search the documentation (read-only).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, a SearchArgs) (*mcp.CallToolResult, any, error) {
			var hits []string
			for uri, body := range docs {
				if uri != ResourceSecrets && a.Query != "" && strings.Contains(strings.ToLower(body), strings.ToLower(a.Query)) {
					hits = append(hits, uri)
				}
			}
			if len(hits) == 0 {
				return text(fmt.Sprintf("no document mentions %q", a.Query)), nil, nil
			}
			slices.Sort(hits)
			return text(fmt.Sprintf("%d document(s) mention %q: %s", len(hits), a.Query, strings.Join(hits, ", "))), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: ToolGetWeather, Description: "Today's weather in a city (read-only).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, a WeatherArgs) (*mcp.CallToolResult, any, error) {
			return text(fmt.Sprintf("weather in %s: sunny, 21°C", a.City)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: ToolWhoAmI, Description: "The caller's certificate identity.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			id, ok := mcpauth.FromContext(ctx)
			if !ok {
				return text("anonymous"), nil, nil
			}
			return text(fmt.Sprintf("%s roles=%s", id.ID, strings.Join(id.Roles, ","))), nil, nil
		})
	destructive := true
	mcp.AddTool(s, &mcp.Tool{Name: ToolDeleteRecord, Description: "Delete a record (destructive).",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &destructive}},
		func(_ context.Context, _ *mcp.CallToolRequest, a DeleteArgs) (*mcp.CallToolResult, any, error) {
			return text(fmt.Sprintf("record %s deleted", a.ID)), nil, nil
		})
	for _, uri := range []string{ResourceHandbook, ResourceDocA, ResourceSecrets} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri, MIMEType: "text/markdown"}, readDoc)
	}
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: TemplateDocs, Name: "docs", MIMEType: "text/markdown"}, readDoc)
	s.AddPrompt(&mcp.Prompt{Name: PromptSummarize, Description: "Summarize a document.",
		Arguments: []*mcp.PromptArgument{{Name: "uri", Required: true}}},
		func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user",
				Content: &mcp.TextContent{Text: "Summarize " + req.Params.Arguments["uri"] + " in three sentences."}}}}, nil
		})
	return s
}

func readDoc(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	body, ok := docs[req.Params.URI]
	if !ok {
		return nil, mcp.ResourceNotFoundError(req.Params.URI)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/markdown", Text: body}}}, nil
}

// complete offers the document URIs (for the summarize prompt) or the
// document names (for the docs template) that start with the typed value.
// The secrets are never offered.
func complete(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	var values []string
	ref := req.Params.Ref
	for uri := range docs {
		if ref == nil {
			break
		}
		if uri == ResourceSecrets {
			continue
		}
		switch {
		case ref.Type == "ref/prompt" && ref.Name == PromptSummarize && req.Params.Argument.Name == "uri":
			values = append(values, uri)
		case ref.Type == "ref/resource" && ref.URI == TemplateDocs && req.Params.Argument.Name == "name":
			if name, ok := strings.CutPrefix(uri, "file:///docs/"); ok {
				values = append(values, name)
			}
		}
	}
	values = slices.DeleteFunc(values, func(v string) bool { return !strings.HasPrefix(v, req.Params.Argument.Value) })
	slices.Sort(values)
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: values, Total: len(values)}}, nil
}
