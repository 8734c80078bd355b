//! Regions

use super::*;

#[test]
fn all_seven_regions_have_their_app_host() {
    let hosts = [
        ("na", "https://app.contentstack.com"),
        ("eu", "https://eu-app.contentstack.com"),
        ("au", "https://au-app.contentstack.com"),
        ("azure-na", "https://azure-na-app.contentstack.com"),
        ("azure-eu", "https://azure-eu-app.contentstack.com"),
        ("gcp-na", "https://gcp-na-app.contentstack.com"),
        ("gcp-eu", "https://gcp-eu-app.contentstack.com"),
    ];
    assert_eq!(Region::ALL.len(), hosts.len());
    for (region, (id, host)) in Region::ALL.iter().zip(hosts) {
        assert_eq!(region.id(), id);
        assert_eq!(region.app_base_url(), host);
        assert_eq!(
            region.public_keys_url(),
            format!("{host}/.well-known/public-keys.json")
        );
        assert_eq!(id.parse::<Region>().unwrap(), *region);
    }
}

#[test]
fn region_aliases_are_case_insensitive() {
    for (alias, region) in [
        ("US", Region::Na),
        ("aws-na", Region::Na),
        ("AWS_EU", Region::Eu),
        ("aws-au", Region::Au),
        ("Azure_NA", Region::AzureNa),
        ("GCP-EU", Region::GcpEu),
    ] {
        assert_eq!(alias.parse::<Region>().unwrap(), region, "{alias}");
    }
    let err = "mars".parse::<Region>().unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::InvalidRegion);
}

#[test]
fn a_custom_base_url_is_a_region() {
    let region: Region = "http://127.0.0.1:9000/".parse().unwrap();
    assert_eq!(
        region.public_keys_url(),
        "http://127.0.0.1:9000/.well-known/public-keys.json"
    );
    assert!("https://".parse::<Region>().is_err());
    assert!("https://host/path".parse::<Region>().is_err());
}
