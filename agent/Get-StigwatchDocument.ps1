<#
.SYNOPSIS
    Prints this Exchange server's stigwatch agent document (schema version 1).

.DESCRIPTION
    Reads the transport settings that DISA STIG EX19-ED-000236 is judged on - this
    server and its role, the organisation where the server can see it, accepted
    domains, the transport config, Send connectors and this server's Receive
    connectors - and prints them as one UTF-8 JSON document.

    Written for Windows PowerShell 5.1 in the Exchange Management Shell, on Mailbox and
    Edge Transport servers. It only reads: every Exchange cmdlet it calls is a Get-
    cmdlet. Outside the Exchange Management Shell it loads the local Exchange snap-in.

    Every value is projected to a plain string, bool, number or string list, because
    ConvertTo-Json in 5.1 writes enums as numbers, unrolls one-element lists and cuts
    nesting. A section that cannot be read (an Edge has no organisation config) is left
    out, never filled in; only the Send connectors are required, and without them the
    script fails with exit code 1.

.PARAMETER Compress
    Print the compressed form instead: a header line, the document gzipped and
    base64-encoded in 76-character lines, and a trailer with the document's length
    and SHA-256, so that a cut or altered output is caught. Azure Arc run command keeps
    only the last 4 KB of inline output; this is the form stigwatch's arc collector asks
    for.

.PARAMETER OutFile
    Write the output to this file as UTF-8 without a byte-order mark, instead of to
    standard output. (In Windows PowerShell 5.1, '>' and Out-File write UTF-16.)

.EXAMPLE
    .\Get-StigwatchDocument.ps1 -OutFile C:\stigwatch\edge01.json

.EXAMPLE
    .\Get-StigwatchDocument.ps1 -Compress
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [switch]$Compress,
    [string]$OutFile
)

$ErrorActionPreference = 'Stop'
$SchemaVersion = 1
$JsonDepth = 8
$Utf8 = [System.Text.UTF8Encoding]::new($false)
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture

# --- Projections: one Exchange value in, plain JSON-ready values out ----------------

function ConvertTo-StigwatchText {
    # Any value as its string form; $null stays $null (an unset value is not "").
    param($Value)
    if ($null -eq $Value) { return $null }
    return $Value.ToString()
}

function ConvertTo-StigwatchBool {
    # A bool, or $null when Exchange gave none: [bool]$null would fake a $false.
    param($Value)
    if ($null -eq $Value) { return $null }
    return [bool]$Value
}

function ConvertTo-StigwatchDomain {
    # SmtpDomain / SmtpDomainWithSubdomains: Address keeps the '*.' that Domain drops.
    param($Value)
    if ($null -eq $Value) { return $null }
    if ($Value -is [string]) { return $Value }
    $address = $Value.PSObject.Properties['Address']
    if ($null -ne $address -and $null -ne $address.Value -and "$($address.Value)" -ne '') {
        return "$($address.Value)"
    }
    return $Value.ToString()
}

function ConvertTo-StigwatchSmartHost {
    # SmartHost: its host name, or its IP address in brackets as Exchange shows it.
    param($Value)
    if ($null -eq $Value) { return $null }
    if ($Value -is [string]) { return $Value }
    if ($Value.IsIPAddress -eq $true -and $null -ne $Value.Address) {
        return '[' + $Value.Address.ToString() + ']'
    }
    if ($null -ne $Value.Domain) { return $Value.Domain.ToString() }
    return $Value.ToString()
}

function ConvertTo-StigwatchName {
    # ADObjectId and similar: the object's name.
    param($Value)
    if ($null -eq $Value) { return $null }
    if ($null -ne $Value.PSObject.Properties['Name'] -and $null -ne $Value.Name) {
        return $Value.Name.ToString()
    }
    return $Value.ToString()
}

function ConvertTo-StigwatchFlags {
    # A flags enum ("Tls, Integrated") as one string per member.
    param($Value)
    if ($null -eq $Value) { return }
    $Value.ToString() -split ',\s*' | Where-Object { $_ -ne '' }
}

function ConvertTo-StigwatchTime {
    param($Value)
    if ($null -eq $Value) { return $null }
    return ([datetime]$Value).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ', $Invariant)
}

function ConvertTo-StigwatchVersion {
    # ServerVersion (AdminDisplayVersion) as "15.2.1544.4".
    param($Value)
    if ($null -eq $Value) { return $null }
    if ($null -ne $Value.PSObject.Properties['Build']) {
        return '{0}.{1}.{2}.{3}' -f $Value.Major, $Value.Minor, $Value.Build, $Value.Revision
    }
    return $Value.ToString()
}

# Lists are built as [string[]] outside the pipeline: a fresh array that ConvertTo-Json
# writes as a JSON list even with one or no element.

function Get-StigwatchSendConnectors {
    foreach ($connector in @(Get-SendConnector)) {
        [ordered]@{
            Name                     = ConvertTo-StigwatchText $connector.Name
            Identity                 = ConvertTo-StigwatchText $connector.Identity
            Guid                     = ConvertTo-StigwatchText $connector.Guid
            Enabled                  = ConvertTo-StigwatchBool $connector.Enabled
            AddressSpaces            = [string[]]@($connector.AddressSpaces | ForEach-Object { ConvertTo-StigwatchText $_ })
            SmartHosts               = [string[]]@($connector.SmartHosts | ForEach-Object { ConvertTo-StigwatchSmartHost $_ })
            DNSRoutingEnabled        = ConvertTo-StigwatchBool $connector.DNSRoutingEnabled
            RequireTLS               = ConvertTo-StigwatchBool $connector.RequireTLS
            TlsAuthLevel             = ConvertTo-StigwatchText $connector.TlsAuthLevel
            TlsDomain                = ConvertTo-StigwatchDomain $connector.TlsDomain
            DomainSecureEnabled      = ConvertTo-StigwatchBool $connector.DomainSecureEnabled
            IgnoreSTARTTLS           = ConvertTo-StigwatchBool $connector.IgnoreSTARTTLS
            CloudServicesMailEnabled = ConvertTo-StigwatchBool $connector.CloudServicesMailEnabled
            TlsCertificateName       = ConvertTo-StigwatchText $connector.TlsCertificateName
            SourceTransportServers   = [string[]]@($connector.SourceTransportServers | ForEach-Object { ConvertTo-StigwatchName $_ })
            Fqdn                     = ConvertTo-StigwatchText $connector.Fqdn
            Port                     = $connector.Port
            ConnectorType            = ConvertTo-StigwatchText $connector.ConnectorType
            IsScopedConnector        = ConvertTo-StigwatchBool $connector.IsScopedConnector
            WhenChanged              = ConvertTo-StigwatchTime $connector.WhenChanged
        }
    }
}

function Get-StigwatchReceiveConnectors {
    # Without -Server, Get-ReceiveConnector lists this server's Receive connectors.
    foreach ($connector in @(Get-ReceiveConnector)) {
        [ordered]@{
            Name                  = ConvertTo-StigwatchText $connector.Name
            Identity              = ConvertTo-StigwatchText $connector.Identity
            Guid                  = ConvertTo-StigwatchText $connector.Guid
            Enabled               = ConvertTo-StigwatchBool $connector.Enabled
            TransportRole         = ConvertTo-StigwatchText $connector.TransportRole
            Bindings              = [string[]]@($connector.Bindings | ForEach-Object { ConvertTo-StigwatchText $_ })
            RemoteIPRanges        = [string[]]@($connector.RemoteIPRanges | ForEach-Object { ConvertTo-StigwatchText $_ })
            Fqdn                  = ConvertTo-StigwatchText $connector.Fqdn
            AuthMechanism         = [string[]]@(ConvertTo-StigwatchFlags $connector.AuthMechanism)
            PermissionGroups      = [string[]]@(ConvertTo-StigwatchFlags $connector.PermissionGroups)
            RequireTLS            = ConvertTo-StigwatchBool $connector.RequireTLS
            DomainSecureEnabled   = ConvertTo-StigwatchBool $connector.DomainSecureEnabled
            TlsDomainCapabilities = [string[]]@($connector.TlsDomainCapabilities | ForEach-Object { ConvertTo-StigwatchText $_ })
        }
    }
}

function Get-StigwatchAcceptedDomains {
    foreach ($domain in @(Get-AcceptedDomain)) {
        [ordered]@{
            Name       = ConvertTo-StigwatchText $domain.Name
            DomainName = ConvertTo-StigwatchDomain $domain.DomainName
            DomainType = ConvertTo-StigwatchText $domain.DomainType
            Default    = ConvertTo-StigwatchBool $domain.Default
        }
    }
}

function Get-StigwatchTransportConfig {
    $config = Get-TransportConfig
    [ordered]@{
        TLSSendDomainSecureList    = [string[]]@($config.TLSSendDomainSecureList | ForEach-Object { ConvertTo-StigwatchDomain $_ })
        TLSReceiveDomainSecureList = [string[]]@($config.TLSReceiveDomainSecureList | ForEach-Object { ConvertTo-StigwatchDomain $_ })
    }
}

function Get-StigwatchOrganization {
    $organization = Get-OrganizationConfig
    [ordered]@{
        name = ConvertTo-StigwatchText $organization.Name
        guid = ConvertTo-StigwatchText $organization.Guid
    }
}

function Get-StigwatchServer {
    # The name is the machine's own; role and version only when Exchange answers.
    $server = [ordered]@{ name = $env:COMPUTERNAME }
    try {
        $exchange = Get-ExchangeServer -Identity $env:COMPUTERNAME
        $server['name'] = ConvertTo-StigwatchText $exchange.Name
        $server['fqdn'] = ConvertTo-StigwatchText $exchange.Fqdn
        $server['role'] = ConvertTo-StigwatchText $exchange.ServerRole
        $server['version'] = ConvertTo-StigwatchVersion $exchange.AdminDisplayVersion
    } catch {
        Write-Warning ('stigwatch: server role and version left out: ' + $_.Exception.Message)
    }
    $server
}

# --- Collection ------------------------------------------------------------------------

function Get-StigwatchExchangeShell {
    # Inside the Exchange Management Shell (or a JEA session) the cmdlets are there;
    # elsewhere (Arc run command, a plain console) load the local snap-in.
    if (Get-Command -Name Get-SendConnector -ErrorAction SilentlyContinue) { return }
    $snapIns = 'Microsoft.Exchange.Management.PowerShell.SnapIn', 'Microsoft.Exchange.Management.PowerShell.E2010'
    foreach ($snapIn in $snapIns) {
        if (Get-PSSnapin -Registered -Name $snapIn -ErrorAction SilentlyContinue) {
            Add-PSSnapin -Name $snapIn
            return
        }
    }
    throw ('Get-SendConnector is not available and no Exchange snap-in is registered ' +
        '(looked for ' + ($snapIns -join ', ') + '); run this on an Exchange Mailbox or ' +
        'Edge Transport server, in the Exchange Management Shell')
}

function Get-StigwatchSection {
    # One optional section: its value, or $null (left out) when the cmdlet is missing
    # on this role or fails. The reason goes to the warning stream, not the document.
    # -List keeps a list a list: @() gathers zero, one or many items, and the unary
    # comma stops the function's output from unrolling it again.
    param([string]$Name, [string]$Cmdlet, [scriptblock]$Collect, [switch]$List)
    if (-not (Get-Command -Name $Cmdlet -ErrorAction SilentlyContinue)) {
        Write-Verbose ('stigwatch: ' + $Name + ' left out: ' + $Cmdlet + ' does not exist here')
        return $null
    }
    try {
        if ($List) { return , [object[]]@(& $Collect) }
        return , (& $Collect)
    } catch {
        Write-Warning ('stigwatch: ' + $Name + ' left out: ' + $Cmdlet + ' failed: ' + $_.Exception.Message)
        return $null
    }
}

function Get-StigwatchDocument {
    Get-StigwatchExchangeShell
    $document = [ordered]@{
        schemaVersion = $SchemaVersion
        collectedAt   = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ', $Invariant)
        server        = Get-StigwatchServer
    }
    $organization = Get-StigwatchSection 'organization' 'Get-OrganizationConfig' { Get-StigwatchOrganization }
    if ($null -ne $organization) { $document['organization'] = $organization }

    $acceptedDomains = Get-StigwatchSection 'acceptedDomains' 'Get-AcceptedDomain' { Get-StigwatchAcceptedDomains } -List
    if ($null -ne $acceptedDomains) { $document['acceptedDomains'] = $acceptedDomains }

    $transportConfig = Get-StigwatchSection 'transportConfig' 'Get-TransportConfig' { Get-StigwatchTransportConfig }
    if ($null -ne $transportConfig) { $document['transportConfig'] = $transportConfig }

    # Required: a failure here stops the script, so no document says "no connectors"
    # when they could not be read.
    $document['sendConnectors'] = [object[]]@(Get-StigwatchSendConnectors)

    $receiveConnectors = Get-StigwatchSection 'receiveConnectors' 'Get-ReceiveConnector' { Get-StigwatchReceiveConnectors } -List
    if ($null -ne $receiveConnectors) { $document['receiveConnectors'] = $receiveConnectors }

    # -InputObject, not the pipeline: piping would unroll the top-level object's lists.
    ConvertTo-Json -InputObject $document -Depth $JsonDepth
}

function ConvertTo-StigwatchCompressed {
    # The framing stigwatch's shared/agentdoc.py reads; keep the two in step.
    param([string]$Json)
    $bytes = $Utf8.GetBytes($Json)
    $buffer = [System.IO.MemoryStream]::new()
    $gzip = [System.IO.Compression.GZipStream]::new($buffer, [System.IO.Compression.CompressionMode]::Compress)
    $gzip.Write($bytes, 0, $bytes.Length)
    $gzip.Dispose()
    $packed = [System.Convert]::ToBase64String($buffer.ToArray(), [System.Base64FormattingOptions]::InsertLineBreaks)
    $sha256 = [System.Security.Cryptography.SHA256]::Create()
    $digest = -join ($sha256.ComputeHash($bytes) | ForEach-Object { $_.ToString('x2') })
    $sha256.Dispose()
    'stigwatch-document/1 gzip base64' + "`r`n" + $packed + "`r`n" +
        'stigwatch-end length=' + $bytes.Length + ' sha256=' + $digest + "`r`n"
}

try {
    $text = Get-StigwatchDocument
    if ($Compress) { $text = ConvertTo-StigwatchCompressed -Json $text }
    if ($OutFile) {
        [System.IO.File]::WriteAllText($OutFile, $text, $Utf8)
    } else {
        # Hosts without a console (a JEA or runspace host) keep their own encoding.
        try { [Console]::OutputEncoding = $Utf8 } catch { Write-Verbose 'stigwatch: no console to set to UTF-8' }
        Write-Output $text
    }
} catch {
    [Console]::Error.WriteLine('stigwatch agent: ' + $_.Exception.Message)
    exit 1
}
