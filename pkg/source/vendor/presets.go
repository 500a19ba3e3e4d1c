package vendor

import (
	"fmt"
	"strings"
)

// Presets is every vendor the vendor source knows, by name. Each list's
// URL, format, jq and change token are the vendor's published ones; the
// samples in testdata/vendors/presets keep each one's structure.
var Presets = map[string]Preset{
	"pagerduty": {
		Name: "pagerduty", URL: "https://developer.pagerduty.com/ip-safelists/LIST-REGION-service-region-json", Title: "PagerDuty webhook and REST API safelists (what the built-in catalog reads)",
		Doc: "https://developer.pagerduty.com/docs/safelist-ips",
		Filters: []Filter{
			{Name: "list", Help: "which list", Values: []string{"webhooks", "rest-api"}, Required: true},
			{Name: "region", Help: "service region", Values: []string{"us", "eu"}, Default: []string{"us"}},
		},
		lists: func(sel Selection) []List {
			var out []List
			for _, l := range sel["list"] {
				for _, r := range sel["region"] {
					out = append(out, List{URL: fmt.Sprintf("https://developer.pagerduty.com/ip-safelists/%s-%s-service-region-json", l, r)})
				}
			}
			return out
		},
	},
	"aws": {
		Name: "aws", URL: "https://ip-ranges.amazonaws.com/ip-ranges.json", Title: "AWS ip-ranges.json, IPv4 and IPv6",
		Doc:   "https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-ranges.html",
		Token: "syncToken", MaxBytes: 8 << 20, MinIPv4: 11, MinIPv6: 24,
		Filters: []Filter{
			{Name: "service", Help: "AMAZON, EC2, S3, CLOUDFRONT, ROUTE53_HEALTHCHECKS, ..."},
			{Name: "region", Help: "us-east-1, eu-west-1, GLOBAL, ..."},
			{Name: "network_border_group", Help: "us-east-1, us-west-2-lax-1, ..."},
		},
		lists: func(sel Selection) []List {
			cond := sel.all("service", "region", "network_border_group")
			return []List{{URL: "https://ip-ranges.amazonaws.com/ip-ranges.json", Format: "json",
				JQ: fmt.Sprintf("(.prefixes[] | select(%s) | .ip_prefix), (.ipv6_prefixes[] | select(%s) | .ipv6_prefix)", cond, cond)}}
		},
	},
	"aws-cloudfront": {
		Name: "aws-cloudfront", URL: "https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips", Title: "AWS CloudFront edge servers (global and regional edge caches)",
		Doc:     "https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/LocationsOfEdgeServers.html",
		MinIPv4: 14,
		Filters: []Filter{{Name: "edge", Help: "global edge locations, regional edge caches", Values: []string{"global", "regional"}, Default: []string{"global", "regional"}}},
		lists: func(sel Selection) []List {
			key := map[string]string{"global": "CLOUDFRONT_GLOBAL_IP_LIST", "regional": "CLOUDFRONT_REGIONAL_EDGE_IP_LIST"}
			var parts []string
			for _, e := range sel["edge"] {
				parts = append(parts, "."+key[e]+"[]")
			}
			return []List{{URL: "https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips", Format: "json", JQ: strings.Join(parts, ", ")}}
		},
	},
	"google": {
		Name: "google", URL: "https://www.gstatic.com/ipranges/LIST.json", Title: "Google goog.json (Google's own services) and cloud.json (Google Cloud customers)",
		Doc:   "https://support.google.com/a/answer/10026322",
		Token: "syncToken", MinIPv4: 10, MinIPv6: 28,
		Filters: []Filter{
			{Name: "list", Help: "goog: Google's services; cloud: addresses Google Cloud customers use", Values: []string{"goog", "cloud"}, Default: []string{"goog"}},
			{Name: "scope", Help: "cloud.json only: us-central1, europe-west1, ..."},
			{Name: "service", Help: "cloud.json only: Google Cloud, ..."},
		},
		lists: func(sel Selection) []List {
			var out []List
			for _, l := range sel["list"] {
				cond := "true"
				if l == "cloud" {
					cond = sel.all("scope", "service")
				}
				out = append(out, List{URL: "https://www.gstatic.com/ipranges/" + l + ".json", Format: "json",
					JQ: fmt.Sprintf(".prefixes[] | select(%s) | (.ipv4Prefix // .ipv6Prefix)", cond)})
			}
			return out
		},
		check: func(sel Selection) error {
			if (len(sel["scope"]) > 0 || len(sel["service"]) > 0) && !(len(sel["list"]) == 1 && sel["list"][0] == "cloud") {
				return fmt.Errorf("scope and service filter cloud.json only: add list: cloud")
			}
			return nil
		},
	},
	"cloudflare": {
		Name: "cloudflare", URL: "https://www.cloudflare.com/ips-v4, https://www.cloudflare.com/ips-v6", Title: "Cloudflare's edge (ips-v4, ips-v6), text lists",
		Doc:     "https://www.cloudflare.com/ips/",
		MinIPv4: 13, MinIPv6: 29,
		Filters: []Filter{familyFilter},
		lists: func(sel Selection) []List {
			var out []List
			for _, f := range sel["family"] {
				out = append(out, List{URL: "https://www.cloudflare.com/ips-v" + f[len(f)-1:], Format: "text"})
			}
			return out
		},
	},
	"github": {
		Name: "github", URL: "https://api.github.com/meta", Title: "GitHub meta API (api.github.com/meta)",
		Doc:      "https://docs.github.com/en/rest/meta/meta",
		MaxBytes: 4 << 20, MinIPv4: 12, MinIPv6: 24,
		Filters: []Filter{{Name: "keys", Help: "which lists of the meta answer", Required: true,
			Values: []string{"hooks", "web", "api", "git", "github_enterprise_importer", "packages", "pages", "importer", "actions", "actions_macos", "codespaces", "dependabot", "copilot"}}},
		lists: func(sel Selection) []List {
			return []List{{URL: "https://api.github.com/meta", Format: "json", JQ: sel.keys("keys")}}
		},
	},
	"atlassian": {
		Name: "atlassian", URL: "https://ip-ranges.atlassian.com/", Title: "Atlassian cloud (ip-ranges.atlassian.com)",
		Doc:   "https://support.atlassian.com/organization-administration/docs/ip-addresses-and-domains-for-atlassian-cloud-products/",
		Token: "syncToken", MinIPv4: 16, MinIPv6: 32,
		Filters: []Filter{
			{Name: "product", Help: "jira, confluence, bitbucket, trello, ..."},
			{Name: "direction", Help: "egress: Atlassian calling you (webhooks); ingress: you calling Atlassian", Values: []string{"egress", "ingress"}},
			{Name: "region", Help: "us-east-1, eu-central-1, global, ..."},
		},
		lists: func(sel Selection) []List {
			return []List{{URL: "https://ip-ranges.atlassian.com/", Format: "json",
				JQ: fmt.Sprintf(".items[] | select(%s) | .cidr", sel.anyOf("product", "direction", "region"))}}
		},
	},
	"stripe": {
		Name: "stripe", URL: "https://stripe.com/files/ips/ips_LIST.json", Title: "Stripe webhook senders and API",
		Doc:     "https://docs.stripe.com/ips",
		Filters: []Filter{{Name: "list", Help: "webhooks: where webhooks come from; api: the API's addresses", Values: []string{"webhooks", "api"}, Required: true}},
		lists: func(sel Selection) []List {
			var out []List
			for _, l := range sel["list"] {
				out = append(out, List{URL: "https://stripe.com/files/ips/ips_" + l + ".json", Format: "json", JQ: "." + strings.ToUpper(l) + "[]"})
			}
			return out
		},
	},
	"datadog": {
		Name: "datadog", URL: "https://ip-ranges.SITE/", Title: "Datadog (ip-ranges.SITE)",
		Doc:   "https://docs.datadoghq.com/api/latest/ip-ranges/",
		Token: "version", MinIPv4: 16, MinIPv6: 40,
		Filters: []Filter{
			{Name: "service", Help: "webhooks: Datadog calling you; the others: where you send to", Required: true,
				Values: []string{"agents", "api", "apm", "logs", "orchestrator", "process", "remote-configuration", "synthetics", "synthetics-private-locations", "webhooks"}},
			{Name: "site", Help: "your Datadog site", Values: []string{"datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu", "ap1.datadoghq.com", "ddog-gov.com"}, Default: []string{"datadoghq.com"}},
		},
		lists: func(sel Selection) []List {
			var parts []string
			for _, s := range sel["service"] {
				q := quote(s)
				parts = append(parts, fmt.Sprintf(".[%s].prefixes_ipv4[], .[%s].prefixes_ipv6[]", q, q))
			}
			var out []List
			for _, site := range sel["site"] {
				out = append(out, List{URL: "https://ip-ranges." + site + "/", Format: "json", JQ: strings.Join(parts, ", ")})
			}
			return out
		},
	},
	"fastly": {
		Name: "fastly", URL: "https://api.fastly.com/public-ip-list", Title: "Fastly's edge (api.fastly.com/public-ip-list)",
		Doc:     "https://www.fastly.com/documentation/reference/api/utils/public-ip-list/",
		MinIPv4: 16, MinIPv6: 32,
		Filters: []Filter{familyFilter},
		lists: func(sel Selection) []List {
			key := map[string]string{"ipv4": ".addresses[]", "ipv6": ".ipv6_addresses[]"}
			var parts []string
			for _, f := range sel["family"] {
				parts = append(parts, key[f])
			}
			return []List{{URL: "https://api.fastly.com/public-ip-list", Format: "json", JQ: strings.Join(parts, ", ")}}
		},
	},
	"oracle": {
		Name: "oracle", URL: "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json", Title: "Oracle Cloud Infrastructure (public_ip_ranges.json)",
		Doc:   "https://docs.oracle.com/en-us/iaas/Content/General/Concepts/addressranges.htm",
		Token: "last_updated_timestamp", MinIPv4: 16, MinIPv6: 32,
		Filters: []Filter{
			{Name: "region", Help: "us-ashburn-1, eu-frankfurt-1, ..."},
			{Name: "tag", Help: "OCI, OSN, OBJECT_STORAGE"},
		},
		lists: func(sel Selection) []List {
			return []List{{URL: "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json", Format: "json",
				JQ: fmt.Sprintf(".regions[] | select(%s) | .cidrs[] | select(%s) | .cidr", sel.all("region"), sel.anyOfField("tag", "tags"))}}
		},
	},
	"hcp-terraform": {
		Name: "hcp-terraform", URL: "https://app.terraform.io/api/meta/ip-ranges", Title: "HCP Terraform (app.terraform.io/api/meta/ip-ranges)",
		Doc: "https://developer.hashicorp.com/terraform/cloud-docs/api-docs/ip-ranges",
		Filters: []Filter{{Name: "keys", Help: "notifications and vcs: HCP Terraform calling you; api: you calling it", Required: true,
			Values: []string{"api", "notifications", "sentinel", "vcs"}}},
		lists: func(sel Selection) []List {
			return []List{{URL: "https://app.terraform.io/api/meta/ip-ranges", Format: "json", JQ: sel.keys("keys")}}
		},
	},
	"grafana": {
		Name: "grafana", URL: "https://grafana.com/api/SERVICE/source-ips.txt", Title: "Grafana Cloud source IPs (per-product text lists)",
		Doc: "https://grafana.com/docs/grafana-cloud/security-and-account-management/allow-list/",
		// Grafana announced on 2026-07-22 that its Allowlist API replaces
		// these lists, with another format and other service names.
		Sunset:     "2027-01-31",
		SunsetNote: "Grafana's Allowlist API replaces them (another format and other service names; not a URL change): move to it with an http source and jq, as https://grafana.com/docs/grafana-cloud/account-management/allow-traffic/ describes",
		Filters: []Filter{{Name: "service", Help: "whose outgoing calls to allow", Required: true,
			Values: []string{"hosted-alerts", "hosted-grafana", "hosted-metrics", "hosted-traces", "hosted-logs"}}},
		lists: func(sel Selection) []List {
			var out []List
			for _, s := range sel["service"] {
				out = append(out, List{URL: "https://grafana.com/api/" + s + "/source-ips.txt", Format: "text"})
			}
			return out
		},
	},
	"intercom": {
		Name: "intercom", URL: "https://static.intercomcdn.com/intercom-ips/REGION/intercom-ip-ranges.json", Title: "Intercom outbound (webhooks, Canvas Kit, data connectors)",
		Doc:     "https://developers.intercom.com/docs/build-an-integration/learn-more/ip-allowlisting",
		Token:   "date",
		Filters: []Filter{{Name: "region", Help: "your workspace's region", Values: []string{"us", "eu", "au"}, Default: []string{"us"}}},
		lists: func(sel Selection) []List {
			var out []List
			for _, r := range sel["region"] {
				out = append(out, List{URL: "https://static.intercomcdn.com/intercom-ips/" + r + "/intercom-ip-ranges.json", Format: "json",
					JQ: `.ip_ranges[] | select(.service == "INTERCOM-OUTBOUND") | .range`})
			}
			return out
		},
	},
}

var familyFilter = Filter{Name: "family", Help: "address family", Values: []string{"ipv4", "ipv6"}, Default: []string{"ipv4", "ipv6"}}
