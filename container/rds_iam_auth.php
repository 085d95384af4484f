<?php
/*
 * RDS IAM authentication token for REDCap's database connection.
 *
 * database.php (written by the start-time bootstrap) includes this file and uses
 * redcap_rds_auth_token() as the MySQL password of the IAM-authenticated application user.
 *
 * Why not aws-sdk-php: REDCap bundles its own SDK, some versions without the RDS classes
 * (redcap-on-aws #111), and loading a second SDK next to it broke REDCap features (#103).
 * The token is only a SigV4-presigned "connect" URL, so it is built here with hash_hmac and
 * curl and depends on no REDCap or SDK version. The bytes are identical to botocore's
 * RDS generate_db_auth_token (tests/test_rds_token.py compares them).
 *
 * Credentials, in the order the AWS SDKs use:
 *   1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
 *   2. the container credentials endpoint: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (ECS)
 *      or AWS_CONTAINER_CREDENTIALS_FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
 *   3. EC2 instance metadata with IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED)
 * Tokens and fetched credentials are cached (APCu when enabled, else per process) until shortly
 * before they expire, so a page view normally costs no HTTP call and no signing.
 *
 * Nothing here logs or echoes a credential or token; errors name the source, never the value.
 * Compatible with PHP 8.2 (host tests) and 8.4 (image).
 */

declare(strict_types=1);

if (!function_exists('redcap_rds_auth_token')) {

    /** Lifetime of an RDS auth token (fixed by RDS). */
    define('REDCAP_RDS_TOKEN_TTL', 900);
    /** A cached token or credential is replaced when less than this many seconds remain. */
    define('REDCAP_RDS_REFRESH_MARGIN', 300);
    /** Cached credentials are still used, when a refresh fails, if valid for longer than this. */
    define('REDCAP_RDS_MIN_VALIDITY', 60);
    /** Link-local host of the ECS (EC2 and Fargate) container credentials endpoint. */
    define('REDCAP_RDS_ECS_HOST', 'http://169.254.170.2');
    define('REDCAP_RDS_IMDS_ENDPOINT', 'http://169.254.169.254');

    /**
     * Returns the RDS IAM auth token (a presigned URL without scheme) used as the DB password.
     *
     * @param int|null $now Unix time to sign at. Only tests pass it; production uses time().
     */
    function redcap_rds_auth_token(string $host, int $port, string $user, string $region, ?int $now = null): string
    {
        $now = $now ?? time();
        $creds = redcap_rds_credentials($now);
        $key = 'redcap_rds_token:' . hash('sha256', implode("\0", [$host, (string) $port, $user, $region, $creds['AccessKeyId'], $creds['Token'] ?? '']));
        $cached = redcap_rds_cache_get($key);
        if (is_array($cached) && $cached['expires'] - REDCAP_RDS_REFRESH_MARGIN > $now && $cached['signed'] <= $now) {
            return $cached['token'];
        }
        $token = redcap_rds_presign($host, $port, $user, $region, $creds, $now);
        // The token is useless once either it or the credentials that signed it expire.
        $expires = $now + REDCAP_RDS_TOKEN_TTL;
        if (isset($creds['Expiration'])) {
            $expires = min($expires, $creds['Expiration']);
        }
        redcap_rds_cache_set($key, ['token' => $token, 'signed' => $now, 'expires' => $expires], $expires - $now);
        return $token;
    }

    /**
     * SigV4 query-string presign of GET https://host:port/?Action=connect&DBUser=user for service
     * rds-db, in exactly the parameter order and encoding botocore produces.
     *
     * @param array{AccessKeyId: string, SecretAccessKey: string, Token?: ?string} $creds
     */
    function redcap_rds_presign(string $host, int $port, string $user, string $region, array $creds, int $now): string
    {
        $amzDate = gmdate('Ymd\THis\Z', $now);
        $date = substr($amzDate, 0, 8);
        $scope = "$date/$region/rds-db/aws4_request";
        // botocore signs urlsplit().hostname, which is lower-cased, and drops the port only for
        // https' default port. The returned URL keeps the host as given.
        $signedHost = $port === 443 ? strtolower($host) : strtolower($host) . ":$port";

        $operation = ['Action' => 'connect', 'DBUser' => $user];
        $auth = [
            'X-Amz-Algorithm' => 'AWS4-HMAC-SHA256',
            'X-Amz-Credential' => $creds['AccessKeyId'] . '/' . $scope,
            'X-Amz-Date' => $amzDate,
            'X-Amz-Expires' => (string) REDCAP_RDS_TOKEN_TTL,
            'X-Amz-SignedHeaders' => 'host',
        ];
        if (isset($creds['Token']) && $creds['Token'] !== '') {
            $auth['X-Amz-Security-Token'] = $creds['Token'];
        }
        // rawurlencode is RFC 3986 (unreserved: A-Z a-z 0-9 - _ . ~), the same as botocore's quote(safe='-_.~').
        $pairs = [];
        foreach ($operation + $auth as $k => $v) {
            $pairs[] = [rawurlencode($k), rawurlencode($v)];
        }
        $query = implode('&', array_map(static fn(array $p): string => $p[0] . '=' . $p[1], $pairs));

        $sorted = $pairs;
        usort($sorted, static fn(array $a, array $b): int => [$a[0], $a[1]] <=> [$b[0], $b[1]]);
        $canonicalQuery = implode('&', array_map(static fn(array $p): string => $p[0] . '=' . $p[1], $sorted));

        $canonicalRequest = implode("\n", [
            'GET',
            '/',
            $canonicalQuery,
            'host:' . $signedHost,
            '',
            'host',
            // botocore hashes the (empty) body here rather than writing UNSIGNED-PAYLOAD.
            hash('sha256', ''),
        ]);
        $stringToSign = implode("\n", ['AWS4-HMAC-SHA256', $amzDate, $scope, hash('sha256', $canonicalRequest)]);

        $kDate = hash_hmac('sha256', $date, 'AWS4' . $creds['SecretAccessKey'], true);
        $kRegion = hash_hmac('sha256', $region, $kDate, true);
        $kService = hash_hmac('sha256', 'rds-db', $kRegion, true);
        $kSigning = hash_hmac('sha256', 'aws4_request', $kService, true);
        $signature = hash_hmac('sha256', $stringToSign, $kSigning);

        return "$host:$port/?$query&X-Amz-Signature=$signature";
    }

    /**
     * The first credentials found in the SDKs' default order. 'Expiration' (unix time) is set for
     * temporary credentials from an endpoint; fetched credentials are cached until near it.
     *
     * @return array{AccessKeyId: string, SecretAccessKey: string, Token: ?string, Expiration?: int, Source: string}
     */
    function redcap_rds_credentials(int $now): array
    {
        $id = redcap_rds_env('AWS_ACCESS_KEY_ID');
        $secret = redcap_rds_env('AWS_SECRET_ACCESS_KEY');
        if ($id !== null && $secret !== null) {
            return ['AccessKeyId' => $id, 'SecretAccessKey' => $secret,
                    'Token' => redcap_rds_env('AWS_SESSION_TOKEN'), 'Source' => 'environment'];
        }

        $relative = redcap_rds_env('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI');
        $full = redcap_rds_env('AWS_CONTAINER_CREDENTIALS_FULL_URI');
        if ($relative !== null || $full !== null) {
            $uri = $relative !== null ? REDCAP_RDS_ECS_HOST . $relative : redcap_rds_checked_full_uri($full);
            return redcap_rds_cached_credentials('container:' . $uri, $now,
                static fn(): array => redcap_rds_container_credentials($uri));
        }

        if (strtolower(redcap_rds_env('AWS_EC2_METADATA_DISABLED') ?? '') !== 'true') {
            $endpoint = rtrim(redcap_rds_env('AWS_EC2_METADATA_SERVICE_ENDPOINT') ?? REDCAP_RDS_IMDS_ENDPOINT, '/');
            return redcap_rds_cached_credentials('imds:' . $endpoint, $now,
                static fn(): array => redcap_rds_imds_credentials($endpoint));
        }

        throw new RuntimeException('RDS IAM auth: no AWS credentials (environment, container endpoint or instance metadata)');
    }

    function redcap_rds_env(string $name): ?string
    {
        $v = getenv($name);
        return ($v === false || $v === '') ? null : $v;
    }

    /** FULL_URI may only point at loopback, the ECS/EKS link-local endpoints, or use https (as in the SDKs). */
    function redcap_rds_checked_full_uri(string $uri): string
    {
        $parts = parse_url($uri);
        $scheme = strtolower((string) ($parts['scheme'] ?? ''));
        $host = strtolower(trim((string) ($parts['host'] ?? ''), '[]'));
        $allowed = ['127.0.0.1', 'localhost', '::1', '169.254.170.2', '169.254.170.23', 'fd00:ec2::23'];
        if ($scheme === 'https' || ($scheme === 'http' && (in_array($host, $allowed, true) || str_starts_with($host, '127.')))) {
            return $uri;
        }
        throw new RuntimeException('RDS IAM auth: AWS_CONTAINER_CREDENTIALS_FULL_URI must use https or a loopback/container endpoint host');
    }

    /** @param callable(): array $fetch */
    function redcap_rds_cached_credentials(string $source, int $now, callable $fetch): array
    {
        $key = 'redcap_rds_creds:' . hash('sha256', $source);
        $cached = redcap_rds_cache_get($key);
        if (is_array($cached) && ($cached['Expiration'] ?? PHP_INT_MAX) - REDCAP_RDS_REFRESH_MARGIN > $now) {
            return $cached;
        }
        try {
            $creds = $fetch();
        } catch (RuntimeException $e) {
            // The refresh starts early; while the endpoint hiccups, credentials that are still
            // valid for a minute keep REDCap connected.
            if (is_array($cached) && ($cached['Expiration'] ?? 0) - REDCAP_RDS_MIN_VALIDITY > $now) {
                return $cached;
            }
            throw $e;
        }
        $ttl = isset($creds['Expiration']) ? $creds['Expiration'] - $now : 3600;
        if ($ttl > REDCAP_RDS_REFRESH_MARGIN) {
            redcap_rds_cache_set($key, $creds, $ttl);
        }
        return $creds;
    }

    function redcap_rds_container_credentials(string $uri): array
    {
        $headers = [];
        $tokenFile = redcap_rds_env('AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE');
        $authToken = $tokenFile !== null ? @file_get_contents($tokenFile) : redcap_rds_env('AWS_CONTAINER_AUTHORIZATION_TOKEN');
        if ($authToken === false) {
            throw new RuntimeException('RDS IAM auth: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE');
        }
        if ($authToken !== null) {
            $authToken = trim($authToken);
            if (preg_match('/[\r\n]/', $authToken)) {
                throw new RuntimeException('RDS IAM auth: container authorization token contains a line break');
            }
            $headers[] = 'Authorization: ' . $authToken;
        }
        $body = redcap_rds_http('GET', $uri, $headers, 'container credentials endpoint');
        return redcap_rds_parse_credentials($body, 'container');
    }

    function redcap_rds_imds_credentials(string $endpoint): array
    {
        $session = redcap_rds_http('PUT', "$endpoint/latest/api/token",
            ['X-aws-ec2-metadata-token-ttl-seconds: 21600'], 'instance metadata (IMDSv2 token)');
        $auth = ['X-aws-ec2-metadata-token: ' . trim($session)];
        $roles = redcap_rds_http('GET', "$endpoint/latest/meta-data/iam/security-credentials/", $auth,
            'instance metadata (role name)');
        $role = trim(strtok($roles, "\n") ?: '');
        if ($role === '') {
            throw new RuntimeException('RDS IAM auth: the instance has no IAM role');
        }
        $body = redcap_rds_http('GET', "$endpoint/latest/meta-data/iam/security-credentials/" . rawurlencode($role),
            $auth, 'instance metadata (credentials)');
        return redcap_rds_parse_credentials($body, 'imds');
    }

    function redcap_rds_parse_credentials(string $body, string $source): array
    {
        $j = json_decode($body, true);
        if (!is_array($j) || !is_string($j['AccessKeyId'] ?? null) || !is_string($j['SecretAccessKey'] ?? null)
            || (isset($j['Code']) && $j['Code'] !== 'Success')) {
            throw new RuntimeException("RDS IAM auth: unusable credentials from $source");
        }
        $creds = ['AccessKeyId' => $j['AccessKeyId'], 'SecretAccessKey' => $j['SecretAccessKey'],
                  'Token' => is_string($j['Token'] ?? null) ? $j['Token'] : null, 'Source' => $source];
        if (is_string($j['Expiration'] ?? null)) {
            $t = strtotime($j['Expiration']);
            if ($t === false) {
                throw new RuntimeException("RDS IAM auth: bad Expiration from $source");
            }
            $creds['Expiration'] = $t;
        }
        return $creds;
    }

    /** Short timeouts: a link-local endpoint either answers at once or is not there. */
    function redcap_rds_http(string $method, string $url, array $headers, string $what): string
    {
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT_MS => 1000,
            CURLOPT_TIMEOUT_MS => 3000,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROXY => '',
            CURLOPT_NOPROXY => '*',
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        ]);
        $body = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $error = curl_error($ch);
        curl_close($ch);
        if ($body === false || $status !== 200) {
            throw new RuntimeException("RDS IAM auth: $what failed (HTTP $status" . ($error !== '' ? ", $error" : '') . ')');
        }
        return (string) $body;
    }

    /** APCu is shared by all Apache workers of the container; without it (CLI) a per-process array. */
    function redcap_rds_cache_get(string $key): mixed
    {
        if (function_exists('apcu_enabled') && apcu_enabled()) {
            $ok = false;
            $v = apcu_fetch($key, $ok);
            return $ok ? $v : null;
        }
        return $GLOBALS['__redcap_rds_cache'][$key] ?? null;
    }

    function redcap_rds_cache_set(string $key, mixed $value, int $ttl): void
    {
        if (function_exists('apcu_enabled') && apcu_enabled()) {
            apcu_store($key, $value, max(1, $ttl));
            return;
        }
        $GLOBALS['__redcap_rds_cache'][$key] = $value;
    }
}
